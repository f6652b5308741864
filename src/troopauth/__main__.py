"""``python -m troopauth``."""

import sys

from .cli import main

sys.exit(main())
