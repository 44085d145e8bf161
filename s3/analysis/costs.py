"""What a piece of work costs: wall time and peak memory on the device it ran on.

    with measure(device) as cost:
        scores = score_method(...)
    cost.seconds, cost.peak_bytes

On CUDA the peak is ``torch.cuda.max_memory_allocated`` above what was allocated before; on the
CPU it is the process's peak resident memory above its level at the start, sampled every few
milliseconds by a background thread (an estimate: allocations shorter than the sampling period
can be missed). Stages write their measurements to ``results/costs/`` or beside their outputs
(never into the executed notebook, which must stay byte-identical between runs) with
``write_stage_costs``; the report turns them into cost tables (``s3.report.costs``, ``s3.report.tta``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from s3.atomic import atomic_write

__all__ = ["Cost", "measure", "write_costs", "write_stage_costs", "read_cost_file", "read_costs"]

_PAGE = 4096


@dataclass
class Cost:
    """One measurement.

    Attributes:
        what: what was measured (``evaluate/s3_point_to_local_center``, ``features/extract``, ...).
        seconds: wall time.
        peak_bytes: peak memory above the start, on ``device``.
        device: ``cuda: <name>`` or ``cpu``.
        items: how many inputs the work covered (images, texts), for per-item rates.
        extra: anything else worth reporting (batch size, views, ...).
    """

    what: str = ""
    seconds: float = 0.0
    peak_bytes: int = 0
    device: str = "cpu"
    items: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_item_ms(self) -> float:
        return 1000 * self.seconds / self.items if self.items else float("nan")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):  # not Linux: no estimate
        return 0


@contextmanager
def measure(device: torch.device | str = "cpu", what: str = "", items: int = 0,
            interval_s: float = 0.002) -> Iterator[Cost]:
    """Time the block and record its peak memory on ``device`` (module docstring)."""
    device = torch.device(device)
    cost = Cost(what=what, items=items)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start_bytes = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        cost.device = f"cuda: {torch.cuda.get_device_name(device)}"
        start = time.perf_counter()
        try:
            yield cost
        finally:
            torch.cuda.synchronize(device)
            cost.seconds = time.perf_counter() - start
            cost.peak_bytes = max(0, torch.cuda.max_memory_allocated(device) - start_bytes)
        return
    baseline, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            done.wait(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds = time.perf_counter() - start
        done.set()
        sampler.join()
        cost.peak_bytes = max(0, max(peak[0], _rss_bytes()) - baseline)


def write_costs(path: str | Path, costs: Sequence[Cost], **context: Any) -> Path:
    """``path`` (JSON): the measurements plus ``context`` (stage, benchmark, ...)."""
    record = {**context, "costs": [asdict(c) for c in costs]}
    return atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n"))


def write_stage_costs(path: str | Path, costs: Sequence[Cost], **context: Any) -> Path | None:
    """``write_costs`` inside a pipeline stage (``S3_STAGE`` set); ``None`` and nothing written outside one.

    A notebook run by hand ("Run All" in JupyterLab) must leave the workspace as the stage left it:
    timings differ on every run, so rewriting a stage's cost file would make DVC see a changed output.
    """
    if not os.environ.get("S3_STAGE"):
        return None
    return write_costs(path, costs, **context)


def read_cost_file(path: str | Path) -> list[dict[str, Any]]:
    """The measurements of one ``write_costs`` file, one flat dict each (its context merged in)."""
    record = json.loads(Path(path).read_text())
    context = {k: v for k, v in record.items() if k != "costs"}
    return [{**context, **cost} for cost in record["costs"]]


def read_costs(folder: str | Path, pattern: str = "*.json") -> list[dict[str, Any]]:
    """Every measurement in the files of ``folder`` matching ``pattern`` (``read_cost_file``)."""
    return [row for path in sorted(Path(folder).glob(pattern)) for row in read_cost_file(path)]
