"""Progress bars that behave in terminals, notebooks and logs.

tqdm draws a bar in a terminal and falls back to plain text lines elsewhere. Pipeline stages set
``TQDM_DISABLE=1`` so executed notebooks stay byte-identical across reruns.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm.std import tqdm  # text bars everywhere; the widget bars need ipywidgets

T = TypeVar("T")

__all__ = ["progress"]


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one: ``progress(total=n)`` then ``.update(k)``)."""
    disable = os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    # Outside a terminal, update rarely so logs get a few plain lines, not thousands.
    mininterval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(iterable, disable=disable, mininterval=mininterval, **kwargs)
