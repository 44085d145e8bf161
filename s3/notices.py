"""Notices for the person running a stage: cache rebuilds, resumed work, skipped files.

Inside a pipeline stage the notebook must stay byte-identical between a cold and a warm run, so
a notice does not go into the notebook: the stage runner sets ``S3_NOTICES`` to a file, notices
are appended there and the runner prints them on its own output. Outside a stage (a script,
JupyterLab) a notice is printed to standard error.
"""

from __future__ import annotations

import os
import sys

__all__ = ["notice", "NOTICES_ENV"]

NOTICES_ENV = "S3_NOTICES"


def notice(message: str) -> None:
    """Tell the person running the stage ``message`` (one line), outside the executed notebook."""
    target = os.environ.get(NOTICES_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(message.rstrip("\n") + "\n")
    else:
        print(message, file=sys.stderr)
