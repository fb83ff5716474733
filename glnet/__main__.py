"""``python -m glnet``: the same as the ``glnet`` command."""

import sys

from .cli import main

sys.exit(main())
