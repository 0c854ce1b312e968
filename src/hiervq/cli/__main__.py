"""``python -m hiervq.cli`` is the ``hiervq`` command too."""

import sys

from . import main

sys.exit(main())
