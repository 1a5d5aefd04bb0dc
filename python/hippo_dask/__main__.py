"""``python -m hippo_dask``: the ``hippo`` command (see :mod:`hippo_dask.cli`); ``python -m hippo_dask demo`` runs the demo."""

import sys

from .cli import main

sys.exit(main())
