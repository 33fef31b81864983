"""Shared CLI pieces: consoles, the one error decorator, one-line failures, tables."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, cast

import typer

from chaoslab.errors import ChaoslabError, UserError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

__all__ = ["console", "err_console", "exit_code_for", "fail", "user_errors"]


class _LazyConsole:
    """A rich Console made on first use: importing rich.console costs a tenth of a second
    that `chaoslab --help` and the listings do not need."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


# rich takes the terminal's width, or COLUMNS (default 80) outside one; soft wrap: a long
# line (a path, a command to paste) is never broken into two
console = cast("Console", _LazyConsole(soft_wrap=True))
err_console = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(exc: BaseException) -> int | None:
    """The exit status an error a user can meet maps to; None for a bug (let it raise)."""
    if isinstance(exc, ChaoslabError):
        return exc.exit_code
    return None


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command: a chaoslab error becomes one line on stderr and its exit status
    (UserError 2, LiveError 1), never a traceback. Anything else is a bug and raises."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            code = exit_code_for(e)
            if code is None:
                raise
            fail(str(e), code)

    return wrapper


def given(name: str, flag: str, value: object) -> str:
    """How the user gave option ``name``: ``--flag VALUE``, or ``VAR=VALUE`` when it came
    from its environment variable (so a bad value names what to fix)."""
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is not None and ctx.get_parameter_source(name) is ParameterSource.ENVIRONMENT:
        for param in ctx.command.params:
            if param.name == name and param.envvar:
                var = param.envvar if isinstance(param.envvar, str) else param.envvar[0]
                return f"{var}={os.environ.get(var, value)}"
    return f"{flag} {value}"


def fail(message: str, code: int = 2) -> NoReturn:
    """One line `error: MESSAGE` on stderr, printed as text (never read as rich markup:
    sources say "[assumption]"), then exit with `code`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def params_frame(profiles: list[str], grep: str | None) -> pd.DataFrame:
    """The catalogue after ``profiles``: key, value, unit, versions, source per knob
    (only keys containing ``grep``, case-insensitive)."""
    import pandas as pd

    from chaoslab.params import CATALOGUE, ParamSet

    ps = ParamSet.resolve(profiles)
    rows = []
    for key, p in sorted(CATALOGUE.items()):
        if grep and grep.lower() not in key.lower():
            continue
        rows.append(
            {
                "key": key,
                "value": ps.text(key),
                "unit": p.unit,
                "versions": p.versions,
                "source": ps.sources[key],
            }
        )
    return pd.DataFrame(rows, columns=["key", "value", "unit", "versions", "source"])


PARAM_FORMATS = ("table", "md", "csv")


def print_params(df: pd.DataFrame, fmt: str, width: int | None = None) -> None:
    """The catalogue rows: keys whole (they are what --set takes), text folded."""
    from chaoslab.cli.tables import Col, render, render_records, screen_width

    if fmt not in PARAM_FORMATS:
        raise UserError(f"--format {fmt}: use one of {', '.join(PARAM_FORMATS)}")
    if fmt == "csv":
        print(df.to_csv(index=False), end="")
        return
    rows = [[str(x) for x in r] for r in df.itertuples(index=False)]
    if fmt == "md":
        print("| key | value | unit | versions | source |")
        print("|---|---|---|---|---|")
        for key, *rest in rows:
            print("| " + " | ".join([f"`{key}`", *(x.replace("|", "\\|") for x in rest)]) + " |")
        return
    width = width or screen_width()
    cols = [Col("key", rigid=True), Col("value"), Col("unit"), Col("versions"), Col("source")]
    keys = max([len(r[0]) for r in rows] + [3])
    if keys + 2 * 4 + 10 * 3 + 30 <= width:  # room for a readable source column
        print(render(cols, rows, width))
        return
    # too narrow for a grid beside the longest key: one record per key
    records = []
    for key, value, unit, versions, source in rows:
        title = f"{key} = {value} ({unit})"
        fields = [("versions", versions), ("source", source)]
        if len(title) > width:  # a long distribution goes under the key
            title, fields = key, [("value", f"{value} ({unit})"), *fields]
        records.append((title, fields))
    print(render_records(records, width))
