"""``python -m upmirror.cli``: the same as the ``upmirror`` script."""

import sys

from upmirror.cli import main

sys.exit(main())
