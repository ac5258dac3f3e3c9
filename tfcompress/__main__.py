"""`python -m tfcompress`: the `tfcompress` command where its script is not on PATH."""

import sys

from tfcompress.cli.main import run

sys.exit(run())
