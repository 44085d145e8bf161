"""Training-free open-vocabulary segmentation: dense CLIP features (``dense``), sliding-window
inference scored by any method of the harness (``slide``), the VOC/Context loaders
(``datasets``) and the examples figure (``plots``)."""
