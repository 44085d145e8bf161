"""s3.analysis.costs: time and peak memory of a block."""

import time

import torch

from s3.analysis.costs import measure, read_costs, write_costs


def test_measure_times_the_block_and_sees_a_large_allocation(tmp_path):
    with measure("cpu", what="sleep", items=4) as cost:
        time.sleep(0.05)
        big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        big += 1
        time.sleep(0.02)
    del big
    assert cost.seconds >= 0.05
    assert cost.peak_bytes >= 32 * 2**20, cost.peak_bytes
    assert abs(cost.per_item_ms - 1000 * cost.seconds / 4) < 1e-9
    write_costs(tmp_path / "a.json", [cost], stage="evaluate", benchmark="eurosat")
    (row,) = read_costs(tmp_path)
    assert row["what"] == "sleep" and row["stage"] == "evaluate" and row["items"] == 4


def test_a_small_block_has_a_small_peak():
    with measure("cpu") as cost:
        sum(range(1000))
    assert cost.peak_bytes < 16 * 2**20
