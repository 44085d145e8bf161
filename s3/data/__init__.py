"""Datasets: the 15 classification benchmarks in the CoOp layout (``benchmarks``) and their
pre-flight check (``verify``)."""
