"""``python -m convgrad`` is the ``convgrad`` command."""

import sys

from .cli import main

sys.exit(main())
