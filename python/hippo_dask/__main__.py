"""``python -m hippo_dask``: the command-line interface (see :mod:`hippo_dask.cli`)."""

from .cli import main

import sys

sys.exit(main())
