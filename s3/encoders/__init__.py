"""CLIP as an encoder: loading weights (``models``), image features (``images``), text embeddings
and a benchmark's whole text side (``text``, ``templates``), and the on-disk embedding cache
(``cache``) every stage shares."""
