"""Training-free open-vocabulary segmentation: dense CLIP features (``dense``), sliding windows
(``slide``), the window-feature cache (``windows``), a dataset scored by any method of the harness
(``evaluate``), the VOC/Context loaders (``datasets``) and the examples figure (``plots``)."""
