"""The one error model: every error a user can cause or meet derives from ChaoslabError.

`UserError` is bad input (a file, an option, a name): the CLI prints its one line and
exits 2. `LiveError` is the world refusing (a cluster unreachable, a hook failing, a lab
that cannot start): one line, exit 1. Anything else reaching the CLI is a bug.
"""

from __future__ import annotations

__all__ = ["ChaoslabError", "LiveError", "UserError", "located"]


class ChaoslabError(Exception):
    """Base of every error chaoslab reports to a user."""

    exit_code = 1

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args) if self.args else type(self).__name__


class UserError(ChaoslabError, ValueError):
    """Bad input: the user fixes the file or the command line. Exit status 2."""

    exit_code = 2


class LiveError(ChaoslabError, RuntimeError):
    """A live target (cluster, lab, hook, network) failed or refused. Exit status 1."""

    exit_code = 1


def located(path: str | None, line: int | None, key: str | None, message: str) -> str:
    """The one shape of a located message: `file:line: key: message`."""
    where = path or "<input>"
    if line is not None:
        where = f"{where}:{line}"
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"
