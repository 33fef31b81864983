"""The core (params, mechanisms, designs, faults, runner, outage, results) stands alone: it
imports no YAML, plotting, Kubernetes client, live code or command line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "chaoslab"
CORE = ("params", "mechanisms", "designs", "faults", "runner", "outage", "results")
FORBIDDEN = ("yaml", "matplotlib", "kubernetes", "chaoslab.live", "chaoslab.plots", "chaoslab.cli")


def _core_files() -> list[Path]:
    files = []
    for name in CORE:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    return files


def _imports(path: Path) -> list[str]:
    """Every module an import statement in the file names, lazy imports in functions too."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_core_module_imports_an_edge_module(path: Path) -> None:
    assert [n for n in _imports(path) if _forbidden(n)] == []


def test_the_check_sees_a_lazy_edge_import(tmp_path: Path) -> None:
    sneaky = tmp_path / "m.py"
    sneaky.write_text("def f():\n    from chaoslab import plots\n    import yaml\n")
    assert [n for n in _imports(sneaky) if _forbidden(n)] == ["chaoslab.plots", "yaml"]


def test_importing_the_core_loads_no_edge_module() -> None:
    mods = ", ".join(f"chaoslab.{m}" for m in CORE)
    code = (
        f"import sys, {mods}; "
        f"bad = [m for m in sys.modules if m.split('.')[0] in ('yaml', 'matplotlib', "
        f"'kubernetes', 'pydantic') or m.startswith(('chaoslab.live', 'chaoslab.plots', "
        f"'chaoslab.cli'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
