"""Running the artifact: a papermill stage with parameter checks and provenance (``stage``,
``provenance``), the offline demo workspace (``demo``) and the HTML export of executed notebooks
(``html_export``)."""
