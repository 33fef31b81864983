"""``chaoslab show RUN_DIR``: a run's metadata line, the values it ran with instead of the
catalogue (meta.json's ``overrides``, with where each came from: ``--set``, or a drill's
``calibration``), and its summary, as a table that fits the screen, a design x fault pivot
of one metric, Markdown, CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaoslab.cli.tables import fold, screen_width
from chaoslab.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from chaoslab.cli.views import Filters, Summary

__all__ = ["meta_line", "override_lines", "read_meta", "show_command"]


def read_meta(run_dir: Path) -> dict[str, Any]:
    """meta.json as a mapping, or one line saying why it is not one."""
    path = run_dir / "meta.json"
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a run folder (no such directory)")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{run_dir}: not a chaoslab run folder (no meta.json)") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: not a run's metadata (a JSON {type(meta).__name__})")
    for key, kinds in _SHAPES.items():
        if key in meta and not isinstance(meta[key], kinds):
            raise UserError(f"{path}: {key}: a JSON {type(meta[key]).__name__}, not a run's {key}")
    return meta


# the fields a run folder is read by, and the JSON types they have when a run wrote them
_SHAPES: dict[str, type | tuple[type, ...]] = {
    "sweep": dict,
    "overrides": dict,
    "calibration": dict,
    "profiles": (list, str),
    "status": str,
    "n_trials": int,
}


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return "?" if value is None else str(value)


def meta_line(run_dir: Path, meta: dict[str, Any], trials: int) -> str:
    """What the run was, on one line: profiles as names, not a Python list."""
    return (
        f"{run_dir}: {_text(meta.get('mode'))} / {_text(meta.get('target'))}, "
        f"{_text(meta.get('status'))}, {trials} trials, seed {_text(meta.get('seed'))}, "
        f"profiles {_text(meta.get('profiles'))}"
    )


def override_lines(meta: dict[str, Any], width: int) -> list[str]:
    """One line per override (folded to ``width``): name = value, from where."""
    cals = {
        c.get("param"): c for c in (meta.get("calibration") or {}).values() if isinstance(c, dict)
    }
    lines = []
    for key, value in (meta.get("overrides") or {}).items():
        text = f"override {key} = {_value(str(value))}, from {_origin(meta, cals.get(key))}"
        first, *rest = fold(text, width) if len(text) <= width else fold(text, width - 2)
        lines += [first, *(f"  {ln}" for ln in rest)]
    return lines


def _value(text: str) -> str:
    """An override as it reads on a line: measured samples by their count."""
    if text.startswith("empirical(") and text.endswith(")"):
        return f"empirical of {text.count(',') + 1} samples"
    return text


def _origin(meta: dict[str, Any], cal: dict[str, Any] | None) -> str:
    if cal is not None:
        return (
            f"calibration: {cal.get('samples', '?')} round trips on node {cal.get('node', '?')}, "
            f"median {_ms(cal.get('median_s'))}, p95 {_ms(cal.get('p95_s'))} "
            f"({cal.get('file', 'calibration.csv')})"
        )
    return "--set" if meta.get("mode") == "simulate" else "the run's meta.json"


def _ms(seconds: object) -> str:
    """Seconds as milliseconds, 3 digits (no numpy: show's default path imports none)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "?"
    return f"{seconds * 1000:.3g} ms"


def show_command(
    run_dir: Path, fmt: str, pivot: str | None, filters: Filters, width: int | None = None
) -> None:
    from chaoslab.cli.views import FORMATS, metric, pivot_text, summary_text, values

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    m = metric(pivot) if pivot else None
    meta = read_meta(run_dir)
    if fmt != "table":
        from chaoslab.cli.views import pivot_frame, to_format

        frame = _frame(run_dir, meta, filters)
        print(to_format(pivot_frame(frame, m) if m else frame, fmt, m.kind if m else None))
        return
    width = width or screen_width()
    # the default table needs no pandas (0.6 s of show's 1.2 CPU-s): a complete run's
    # summary.csv is read with the csv module
    if m:
        frame = _frame(run_dir, meta, filters)
        n, text = _trials(values(frame, "trials")), pivot_text(frame, m, width)
    else:
        rows = _rows(run_dir, meta, filters)
        n, text = _trials(values(rows, "trials")), summary_text(rows, width)
    print("\n".join(fold(meta_line(run_dir, meta, n), width) + override_lines(meta, width)))
    print(text)


def _trials(counts: list[object]) -> int:
    """The trials shown; a cell without a count adds none (as pandas' sum skips NaN)."""
    given = [float(t) for t in counts if t == t]  # type: ignore[arg-type]
    return int(sum(given))


def _complete(run_dir: Path, meta: dict[str, Any]) -> bool:
    """Whether the run's summary is on disk: no need to read every trial back, nor to
    open its Parquet files (pyarrow.parquet's import alone is 0.1 s)."""
    return meta.get("status") == "complete" and (run_dir / "summary.csv").exists()


def _frame(run_dir: Path, meta: dict[str, Any], filters: Filters) -> pd.DataFrame:
    """The summary as a DataFrame, for the pivot and the csv, md and json formats."""
    import pandas as pd

    from chaoslab.cli.views import select

    complete = _complete(run_dir, meta)
    return select(pd.read_csv(run_dir / "summary.csv") if complete else _summary(run_dir), filters)


def _rows(run_dir: Path, meta: dict[str, Any], filters: Filters) -> Summary:
    from chaoslab.cli.views import Summary, read_summary, select

    if _complete(run_dir, meta):
        return select(read_summary(run_dir / "summary.csv"), filters)
    return select(Summary.of_frame(_summary(run_dir)), filters)


def _summary(run_dir: Path) -> pd.DataFrame:
    """The summary of a run that has none on disk (partial, interrupted), from its trials."""
    from chaoslab.results import load_run

    return load_run(run_dir).summary()
