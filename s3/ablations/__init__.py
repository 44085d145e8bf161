"""Ablations of S^3's choices, scored from the cached image features and the saved text side only."""
