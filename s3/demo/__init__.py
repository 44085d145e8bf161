"""The embedded offline demo: a generated world (``world``), a tiny CLIP trained on it in seconds
(``model``), and the DVC workspace that runs the paper pipeline on them (``workspace``;
``python -m s3.demo``)."""
