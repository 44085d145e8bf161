"""The one error type users see: a problem they can fix, with a message that says how.

Every such error (a missing dataset, a bad parameter value, a corrupt stage output, missing
weights, ...) derives from :class:`S3Error`. The command line and the stage runner print its
message as one line, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["S3Error"]


class S3Error(Exception):
    """A user-fixable problem; ``str(error)`` says what to do."""
