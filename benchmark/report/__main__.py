"""``python -m benchmark.report <results/experiment>``: the model-selection report of a folder."""

import sys

from benchmark.report.page import main

sys.exit(main(sys.argv[1:]))
