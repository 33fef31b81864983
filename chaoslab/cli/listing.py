"""What ``designs``, ``faults``, ``profiles`` and shell completion list, without importing
the model (the registries load NumPy and SimPy: a second or more on a busy machine).

The first listing builds the rows from the registries and keeps them in the user's cache
(``$XDG_CACHE_HOME/chaoslab``, default ``~/.cache/chaoslab``) under a digest of the
registries' source files; later ones read that file. A changed source (an upgrade, an
edited working tree) has another digest, so the rows are built again: never stale, only
slower once. A cache that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["build", "cache_file", "digest", "listing"]

PACKAGE = Path(__file__).resolve().parent.parent
# the modules whose registries the listing copies
SOURCES = ("designs", "faults.py", "params")


def digest() -> str:
    """SHA-256 over the registries' source files (names and bytes)."""
    h = hashlib.sha256()
    for name in SOURCES:
        path = PACKAGE / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def build() -> dict[str, Any]:
    """The rows, from the registries themselves."""
    from chaoslab.designs import DESIGNS
    from chaoslab.faults import FAULTS
    from chaoslab.params import CATALOGUE, PROFILES

    designs = [[d.key, d.origin, d.entry, d.failover] for d in DESIGNS.values()]
    faults = [
        [f.kind, f.target_kind, f.default_target, _options(f.options), f.doc]
        for f in FAULTS.values()
    ]
    profiles = [
        [p.name, p.family, "yes" if p.default else "", p.covers, str(len(p.settings)), p.doc]
        for p in sorted(PROFILES.values(), key=lambda p: (p.family, p.name))
    ]
    return {
        "designs": designs,
        "faults": faults,
        "profiles": profiles,
        "params": sorted(CATALOGUE),
    }


def _options(options: Mapping[str, str]) -> str:
    return ", ".join(f"{o} ({k})" for o, k in options.items())


def cache_file(key: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chaoslab" / f"listing-{key[:16]}.json"


def listing() -> dict[str, Any]:
    """The rows from the cache when it holds this source's, else built (and cached)."""
    key = digest()
    path = cache_file(key)
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("digest") == key:
            return dict(data["rows"])
    except (OSError, ValueError, KeyError):
        pass  # no cache yet, or a garbled one: build it
    rows = build()
    try:
        from chaoslab.results import atomic_write_text

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"digest": key, "rows": rows}))
    except OSError:
        pass  # a read-only home: list without a cache
    return rows
