"""Shared CLI pieces: consoles, the one error decorator, one-line failures, tables."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chaoslab.errors import ChaoslabError
from chaoslab.results import format_value

__all__ = ["console", "err_console", "exit_code_for", "fail", "user_errors"]

# outside a terminal (CI logs, pipes) rich would wrap tables at 80 columns
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

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


def fail(message: str, code: int = 2) -> NoReturn:
    """One line `error: MESSAGE` on stderr, printed as text (never read as rich markup:
    sources say "[assumption]"), then exit with `code`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def _fmt(v: object) -> str:
    return format_value(v)


_HEADERS = {
    "trials": "n",
    "recovered": "recovered",
    "recovery_p50": "recovery p50",
    "recovery_p95": "p95",
    "recovery_max": "max",
    "downtime_mean": "downtime mean",
    "lost_mean": "lost mean",
    "connections_reset_mean": "conn reset",
    "connections_hung_mean": "conn hung",
}


def summary_table(df: pd.DataFrame, title: str | None = None) -> Table:
    """The run summary as a terminal table (seconds; 'never' = not recovered)."""
    metric_cols = [c for c in _HEADERS if c in df.columns]
    key_cols = [c for c in df.columns if c not in _HEADERS and not _is_metric(c)]
    t = Table(title=title, show_lines=False)
    for c in key_cols:
        width = max([len(c), *(len(_fmt(v)) for v in df[c])])
        t.add_column(c, no_wrap=True, min_width=width)
    for c in metric_cols:
        t.add_column(_HEADERS[c], justify="right")
    for _, row in df.iterrows():
        cells = [escape(_fmt(row[c])) for c in key_cols]
        for c in metric_cols:
            v = row[c]
            cells.append(f"{v:.0%}" if c == "recovered" else _fmt(v))
        t.add_row(*cells)
    return t


def _is_metric(col: str) -> bool:
    return col.startswith(("recovery_", "downtime_", "lost_", "degraded_", "connections_"))


def params_frame(profiles: list[str], grep: str | None) -> pd.DataFrame:
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
    return pd.DataFrame(rows)


def print_params(df: pd.DataFrame, fmt: str) -> None:
    if fmt == "csv":
        print(df.to_csv(index=False), end="")
        return
    if fmt == "md":
        print("| key | value | unit | versions | source |")
        print("|---|---|---|---|---|")
        for _, r in df.iterrows():
            print(f"| `{r.key}` | {r.value} | {r.unit} | {r.versions} | {r.source} |")
        return
    if fmt != "table":
        fail(f"--format: unknown format {fmt!r} (table, md, csv)")
    t = Table("key", "value", "unit", "versions", "source", show_lines=True)
    for _, r in df.iterrows():
        # escaped: sources say "[assumption]", which rich would take for a markup tag
        t.add_row(*(escape(str(x)) for x in (r.key, r.value, r.unit, r.versions, r.source)))
    console.print(t)
