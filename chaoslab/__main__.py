"""``python -m chaoslab`` runs the command line."""

import signal
import sys


def _leave(signum: int, frame: object) -> None:
    # a Ctrl-C while the command line is still being imported: exit 130, no traceback
    # (chaoslab.cli.main installs Python's own handler once it can close a run properly)
    raise SystemExit(130)


signal.signal(signal.SIGINT, _leave)

from chaoslab.cli import main  # noqa: E402  (after the handler, on purpose)

sys.exit(main())
