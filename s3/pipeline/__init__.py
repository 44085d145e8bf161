"""Running the artifact: a papermill stage with parameter checks and provenance (``stage``,
``params``, ``provenance``), what is derived and kept in sync (``sync``), finding a notebook's
workspace (``workspace``) and the HTML export of executed notebooks (``html_export``)."""
