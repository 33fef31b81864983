"""Where the Go build of the control plane is: ``build/k8s/<dir>-<hash>/bin``.

``tools/build.sh`` builds each Go module under ``tools/`` into a folder named after the
module folder and a hash of its go.mod, go.sum and Go files, so a changed module gets a new folder
and an unchanged one is never rebuilt. This module computes the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from chaoslab.live.cluster.errors import BuildMissing

__all__ = ["REPO", "Build", "find_build", "go_available", "module_hash"]

REPO = Path(__file__).resolve().parents[3]
#: the module of the current release; tools/k8s-1.33 holds the pre-1.34 one
CURRENT = "k8s"
KWOK = "kwok"


def go_available() -> bool:
    return shutil.which("go") is not None


def build_root() -> Path:
    return Path(os.environ.get("CHAOSLAB_K8S_BUILD", str(REPO / "build" / "k8s")))


def module_hash(module_dir: Path) -> str:
    """First 16 hex digits of sha256(go.mod + go.sum + the module's own *.go files in
    byte order of their names), as tools/build.sh computes it: a changed main.go is a new
    build, not the cached one."""
    h = hashlib.sha256()
    go = sorted(module_dir.glob("*.go"), key=lambda f: f.name.encode())
    for f in (module_dir / "go.mod", module_dir / "go.sum", *go):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Build:
    """One built module: its binaries and the versions it was built from."""

    module: str
    dir: Path
    versions: dict[str, str]

    def bin(self, command: str) -> Path:
        return self.dir / "bin" / command


def find_build(module: str = CURRENT) -> Build:
    """The complete build of ``tools/<module>`` for its current go.mod, go.sum and Go files."""
    src = REPO / "tools" / module
    if not (src / "go.mod").is_file():
        raise BuildMissing(f"tools/{module}/go.mod not found under {REPO}")
    out = build_root() / f"{module}-{module_hash(src)}"
    if not (out / ".complete").is_file():
        raise BuildMissing(
            f"tools/{module} is not built for its current go.mod ({out} missing); "
            f"run tools/build.sh {module}"
        )
    versions = json.loads((out / "versions.json").read_text())
    return Build(module, out, versions)
