"""Plain-text tables that fit the terminal: numbers (and parameter keys) are never cut,
text columns fold onto continuation lines, and when the numbers alone are wider than the
screen the columns go into consecutive blocks, each repeating the name columns.

The width is the terminal's, or ``COLUMNS`` (default 80) when output is not a terminal, so
a CI log or a pipe gets the same table a person sees. Pure Python: no pandas here, so
``designs``, ``faults`` and ``profiles`` list without loading it.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Col", "Heading", "fold", "render", "render_records", "screen_width"]

SEP = "  "
# between two right-aligned number columns one space is enough (the padding adds more)
NUM_SEP = " "
# a folded text column keeps at least this many characters per line
TEXT_MIN = 10
# a header word longer than this may break inside (else it sets its column's width)
HEADER_WORD_MAX = 16
# characters after which a word may break when a column folds (names are kebab-case)
_BREAK_AFTER = "-_./[,=+:"


def screen_width() -> int:
    """The terminal's width; ``COLUMNS`` or 80 when stdout is not a terminal."""
    return max(20, shutil.get_terminal_size((80, 24)).columns)


@dataclass(frozen=True)
class Col:
    """A column: ``rigid`` ones (numbers, keys) are never folded; numbers align right."""

    header: str
    rigid: bool = False
    right: bool = False


@dataclass(frozen=True)
class Heading:
    """A section line between rows (e.g. the fault and profile the rows below share)."""

    text: str


Row = Sequence[str] | Heading


def fold(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``: at spaces first, then after ``-``, ``.``,
    ``[`` ..., a hard cut only for a word with no such place."""
    width = max(1, width)
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split(" "):
            cand = f"{line} {word}" if line else word
            if len(cand) <= width:
                line = cand
                continue
            if line:
                lines.append(line)
            line = word
            while len(line) > width:
                cut = _break_point(line, width)
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def _break_point(word: str, width: int) -> int:
    for i in range(width, 0, -1):
        if word[i - 1] in _BREAK_AFTER:
            return i
    return width


def _longest_part(text: str) -> int:
    """The width below which ``text`` would have to break inside a word."""
    return max((len(w) for w in text.split()), default=0)


def _widths(
    cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int, text_min: int = TEXT_MIN
) -> list[int] | None:
    """Column widths that fit ``width``, or None when the rigid columns alone do not (a
    number column is as wide as its header's longest word, so a header breaks between
    words, not inside one)."""
    natural = [max([len(r[i]) for r in rows] + [1]) for i in range(len(cols))]
    # (a text column's natural width counts its header's words, not the header whole)
    words = [min(_longest_part(c.header), HEADER_WORD_MAX) for c in cols]
    w = [
        max(n, h) if c.rigid else max(min(n, text_min), h)
        for c, n, h in zip(cols, natural, words, strict=True)
    ]
    room = width - sum(w) - _seps(cols)
    if room < 0:
        return None
    # the leftover goes first to folded text, the narrowest column first (so all fold
    # about equally), then to headers that would take two lines
    while room > 0:
        short = [i for i in range(len(w)) if w[i] < natural[i]]
        if not short:
            break
        w[min(short, key=lambda i: w[i])] += 1
        room -= 1
    for i, c in enumerate(cols):
        grow = min(room, max(0, len(c.header) - w[i]))
        w[i] += grow
        room -= grow
    return w


def _sep(left: Col, right: Col) -> str:
    return NUM_SEP if left.right and right.right else SEP


def _seps(cols: Sequence[Col]) -> int:
    return sum(len(_sep(a, b)) for a, b in itertools.pairwise(cols))


def _join(parts: Sequence[str], cols: Sequence[Col]) -> str:
    out = parts[0] if parts else ""
    for i in range(1, len(parts)):
        out += _sep(cols[i - 1], cols[i]) + parts[i]
    return out


def _line(cells: Sequence[list[str]], cols: Sequence[Col], widths: Sequence[int]) -> list[str]:
    height = max(len(c) for c in cells)
    out = []
    for k in range(height):
        parts = []
        for lines, col, w in zip(cells, cols, widths, strict=True):
            text = lines[k] if k < len(lines) else ""
            parts.append(text.rjust(w) if col.right else text.ljust(w))
        out.append(_join(parts, cols).rstrip())
    return out


def _block(
    cols: Sequence[Col], rows: Sequence[Row], widths: Sequence[int], width: int
) -> list[str]:
    headers = [fold(c.header, w) for c, w in zip(cols, widths, strict=True)]
    top = max(len(h) for h in headers)
    headers = [[""] * (top - len(h)) + h for h in headers]  # headers sit on the rule
    out = _line(headers, cols, widths)
    out.append(_join(["-" * w for w in widths], cols))
    for i, row in enumerate(rows):
        if isinstance(row, Heading):
            # a blank line before every section but the first sets the sections apart
            out += ([""] if i else []) + fold(row.text + ":", width)
            continue
        cells = [[v] if c.rigid else fold(v, w) for v, c, w in zip(row, cols, widths, strict=True)]
        out += _line(cells, cols, widths)
    return out


def render(
    cols: Sequence[Col],
    rows: Sequence[Row],
    width: int | None = None,
    *,
    keep: int = 1,
) -> str:
    """The table as text no wider than ``width`` (the screen's by default). When it does
    not fit, the columns after the first ``keep`` go into blocks, each with those first."""
    width = width or screen_width()
    data = [r for r in rows if not isinstance(r, Heading)]
    blocks: list[list[int]] = []
    rest = list(range(keep, len(cols)))
    # split into blocks rather than fold the name columns to a sliver
    roomy = max(TEXT_MIN, width // 3)
    if _fit(list(range(len(cols))), cols, data, width) is not None:
        roomy = TEXT_MIN  # it fits in one block: fold names rather than split
    while rest:
        take = len(rest)
        while take > 1 and _fit([*range(keep), *rest[:take]], cols, data, width, roomy) is None:
            take -= 1
        blocks.append(rest[:take])
        rest = rest[take:]
    out: list[str] = []
    for n, block in enumerate(blocks or [[]]):
        idx = [*range(keep), *block]
        sub_cols = [cols[i] for i in idx]
        sub_rows: list[Row] = [r if isinstance(r, Heading) else [r[i] for i in idx] for r in rows]
        widths = _fit(idx, cols, data, width) or _squeezed(sub_cols, data, idx, width)
        if n:
            out.append("")
        out += _block(sub_cols, sub_rows, widths, width)
    return "\n".join(out)


def _fit(
    idx: Sequence[int],
    cols: Sequence[Col],
    data: Sequence[Sequence[str]],
    width: int,
    text_min: int = TEXT_MIN,
) -> list[int] | None:
    return _widths([cols[i] for i in idx], [[r[i] for i in idx] for r in data], width, text_min)


def _squeezed(
    cols: Sequence[Col], data: Sequence[Sequence[str]], idx: Sequence[int], width: int
) -> list[int]:
    # one number column with its names is wider than the screen: show it whole anyway
    return [max([len(r[i]) for r in data] + [1]) for i in idx]


def render_records(
    records: Sequence[tuple[str, Sequence[tuple[str, str]]]], width: int | None = None
) -> str:
    """Records one under the other, for tables whose rigid columns leave no room: the
    title line whole, then ``label: value`` lines folded under a hanging indent."""
    width = width or screen_width()
    out: list[str] = []
    for title, fields in records:
        out.append(title)
        for label, value in fields:
            if not value:
                continue
            lead = f"    {label}: "
            lines = fold(value, width - len(lead))
            out.append(lead + lines[0])
            out += [" " * len(lead) + x for x in lines[1:]]
    return "\n".join(out)
