"""Datasets: the 15 classification benchmarks in the CoOp layout (``benchmarks``), their
pre-flight check (``verify``) and the generated world of the offline demo (``demo_world``)."""
