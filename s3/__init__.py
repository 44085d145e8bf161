"""S^3: Synonymous Semantic Space for robust CLIP zero-shot classification.

The package holds the logic; the notebooks in ``notebooks/`` orchestrate and explain it.
"""

__version__ = "0.1.0"
