"""`python -m bptt_keras ...` runs the `bptt-keras` command."""

import sys

from bptt_keras.cli import main

sys.exit(main())
