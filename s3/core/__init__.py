"""The method: class spaces from synonym embeddings, point-to-space metrics, the compared methods.

Pure tensor and array code: no files, no model, no pipeline. ``spaces`` builds a class's space
(Vietoris-Rips complex, H0), ``scoring`` scores images against stacked spaces, ``methods`` names
every compared method, ``text_side`` holds one benchmark's text embeddings and spaces, and
``metrics`` computes accuracies and mIoU.
"""
