"""``python -m hiervq`` is the ``hiervq`` command."""

import sys

from .cli import main

sys.exit(main())
