"""``python -m s3.demo``: run the offline demo (see ``s3.demo.workspace``)."""

import sys

from s3.demo.workspace import main

sys.exit(main())
