"""Shared fixtures: the tiny demo architecture with seeded random weights (CPU, fp32)."""

import pytest

from s3.encoders.models import ModelSpec, load_model

TINY = ModelSpec(arch="S3-Demo-Tiny", pretrained="none", device="cpu", precision="fp32", seed=0)


@pytest.fixture(scope="module")
def tiny():
    """One model per test module, so a test that patches it cannot reach another module."""
    return load_model(TINY)
