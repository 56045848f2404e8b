"""``python -m benchmark.speed``: the timing table of every detector x framework."""

import sys

from benchmark.speed.table import main

sys.exit(main())
