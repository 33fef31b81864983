"""``python -m chaoslab`` runs the command line."""

import sys

from chaoslab.cli import main

sys.exit(main())
