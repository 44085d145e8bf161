"""``python -m s3``: the ``s3`` command line."""

import sys

from s3.cli import main

sys.exit(main())
