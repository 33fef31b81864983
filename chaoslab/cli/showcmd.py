"""``chaoslab show RUN_DIR``: a run's metadata line and its summary, as a table that fits
the screen, a design x fault pivot of one metric, Markdown, CSV or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaoslab.cli.tables import fold, screen_width
from chaoslab.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from chaoslab.cli.views import Filters

__all__ = ["meta_line", "read_meta", "show_command"]


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


def show_command(
    run_dir: Path, fmt: str, pivot: str | None, filters: Filters, width: int | None = None
) -> None:
    import pandas as pd

    from chaoslab.cli.views import (
        FORMATS,
        metric,
        pivot_frame,
        pivot_text,
        select,
        summary_text,
        to_format,
    )

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    m = metric(pivot) if pivot else None
    meta = read_meta(run_dir)
    summary_csv = run_dir / "summary.csv"
    complete = meta.get("status") == "complete" and summary_csv.exists()
    # a complete run's summary is on disk: no need to read every trial back, nor to
    # open its Parquet files (pyarrow.parquet's import alone is 0.1 s of show's 1.3 s)
    summary = pd.read_csv(summary_csv) if complete else _summary(run_dir)
    summary = select(summary, filters)
    if fmt != "table":
        frame = pivot_frame(summary, m) if m else summary
        print(to_format(frame, fmt, m.kind if m else None))
        return
    width = width or screen_width()
    n = int(summary["trials"].sum()) if "trials" in summary.columns else 0
    print("\n".join(fold(meta_line(run_dir, meta, n), width)))
    if m:
        print(pivot_text(summary, m, width))
    else:
        print(summary_text(summary, width))


def _summary(run_dir: Path) -> pd.DataFrame:
    """The summary of a run that has none on disk (partial, interrupted), from its trials."""
    from chaoslab.results import load_run

    return load_run(run_dir).summary()
