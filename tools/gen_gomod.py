#!/usr/bin/env python3
"""Write a Go module's go.mod that pins one k8s.io/kubernetes release.

k8s.io/kubernetes points its staging modules (k8s.io/api, k8s.io/client-go, ...) at
``./staging/src/...`` and requires them at v0.0.0, which the module proxy does not serve.
A module that imports k8s.io/kubernetes therefore needs one ``replace`` per staging
module, to the published v0.N.M tag of the same release. This script reads the
release's own go.mod (``go mod download -json k8s.io/kubernetes@vX`` names the file) and
derives that block from it, so nobody types it; it also takes the release's ``go`` and
``godebug`` lines and pins etcd's server at the version that go.mod requires.

    python3 tools/gen_gomod.py tools/k8s v1.37.2
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES = "k8s.io/kubernetes"
ETCD_SERVER = "go.etcd.io/etcd/server/v3"
_REPLACE_LINE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/")
_REQUIRE_LINE = re.compile(r"^\s*([\w./-]+)\s+(v[\w.+-]+)")


@dataclass
class UpstreamMod:
    """What this script needs from k8s.io/kubernetes's go.mod."""

    go: str
    godebug: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)
    requires: dict[str, str] = field(default_factory=dict)


def go(args: list[str], cwd: Path) -> str:
    done = subprocess.run(["go", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"go {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def upstream_gomod(version: str, cwd: Path) -> Path:
    info = json.loads(go(["mod", "download", "-json", f"{KUBERNETES}@{version}"], cwd))
    if info.get("Error"):
        sys.exit(f"{KUBERNETES}@{version}: {info['Error']}")
    return Path(info["GoMod"])


def parse(text: str) -> UpstreamMod:
    mod = UpstreamMod(go="")
    for line in text.splitlines():
        bare = line.split("//", 1)[0].rstrip()
        if bare.startswith("go "):
            mod.go = bare.split()[1]
        elif bare.startswith("godebug "):
            mod.godebug.append(bare.split(None, 1)[1])
        elif m := _REPLACE_LINE.match(bare):
            mod.staging.append(m.group(1))
        elif m := _REQUIRE_LINE.match(bare.removeprefix("require ")):
            mod.requires[m.group(1)] = m.group(2)
    if not mod.go or not mod.staging:
        sys.exit("k8s.io/kubernetes go.mod: no go line or no staging replaces found")
    return mod


def staging_version(version: str) -> str:
    """v1.37.2 -> v0.37.2: the staging modules are tagged with the minor release."""
    m = re.fullmatch(r"v1\.(\d+)\.(\d+)", version)
    if not m:
        sys.exit(f"{version}: expected a release like v1.37.2")
    return f"v0.{m.group(1)}.{m.group(2)}"


def edit_args(mod: UpstreamMod, version: str) -> list[str]:
    tag = staging_version(version)
    args = [f"-go={mod.go}", f"-require={KUBERNETES}@{version}"]
    args += [f"-godebug={d}" for d in mod.godebug]
    args += [f"-replace={name}={name}@{tag}" for name in sorted(mod.staging)]
    if ETCD_SERVER in mod.requires:
        args.append(f"-require={ETCD_SERVER}@{mod.requires[ETCD_SERVER]}")
    return args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("module_dir", type=Path)
    ap.add_argument("version", help="k8s.io/kubernetes release, e.g. v1.37.2")
    ap.add_argument("--module", help="module path for a new go.mod")
    opts = ap.parse_args()
    target: Path = opts.module_dir.resolve()
    target.mkdir(parents=True, exist_ok=True)
    mod = parse(upstream_gomod(opts.version, target).read_text())
    if not (target / "go.mod").exists():
        go(["mod", "init", opts.module or f"chaoslab.local/tools/{target.name}"], target)
    for line in (target / "go.mod").read_text().splitlines():
        if m := re.match(r"^\s*(?:replace\s+)?(k8s\.io/[\w.-]+)\s*=>", line):
            go(["mod", "edit", f"-dropreplace={m.group(1)}"], target)
    go(["mod", "edit", *edit_args(mod, opts.version)], target)
    print(f"{target / 'go.mod'}: {KUBERNETES} {opts.version}, {len(mod.staging)} replaces")


if __name__ == "__main__":
    main()
