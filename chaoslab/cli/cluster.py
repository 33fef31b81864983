"""``chaoslab cluster up|status|down``: the real Kubernetes control plane on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chaoslab.cli.common import console, user_errors

__all__ = ["app", "register"]

app = typer.Typer(
    help="A real control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; "
    "built from Go modules) with kwok nodes, on loopback.",
    no_args_is_help=True,
)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state", help="State folder (default /run/chaoslab-cluster/NAME)."),
]
NameOpt = Annotated[str, typer.Option("--name", help="Cluster name (names the state folder).")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cluster")


def _state_dir(state: Path | None, name: str) -> Path:
    from chaoslab.live.cluster.state import default_state_dir

    return state or default_state_dir(name)


@app.command()
@user_errors
def up(
    experiment: Annotated[
        Path | None, typer.Argument(help="Experiment YAML: its cluster: and parameters.")
    ] = None,
    state: StateOpt = None,
    name: NameOpt = "default",
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="Leave a failed start running for a look.")
    ] = False,
    build: Annotated[
        str,
        typer.Option(
            "--build",
            help="The control plane's Go module under tools/: k8s (the current release) "
            "or k8s-1.33 (the pre-1.34 node lifecycle; tools/build.sh k8s-1.33 builds it).",
        ),
    ] = "k8s",
) -> None:
    """Bring the cluster up with the experiment's timers (or the catalogue defaults)."""
    from chaoslab.live.cluster import ClusterConfig, LocalCluster, config_from_experiment
    from chaoslab.live.cluster.build import find_build

    config = config_from_experiment(experiment) if experiment else ClusterConfig()
    cluster = LocalCluster.up(
        config,
        state_dir=_state_dir(state, name),
        name=name,
        log=lambda m: console.print(m),
        keep_failed=keep_failed,
        build=find_build(build),
    )
    info = cluster.state.info
    console.print(f"cluster up in {info['up_seconds']} s: {', '.join(_versions(info))}")
    console.print(f"export KUBECONFIG={cluster.kubeconfig}")


def _versions(info: dict[str, object]) -> list[str]:
    versions = info.get("versions") or {}
    assert isinstance(versions, dict)
    return [f"{k} {v}" for k, v in versions.items()]


@app.command()
@user_errors
def status(state: StateOpt = None, name: NameOpt = "default") -> None:
    """What runs, what is healthy, and what is left over."""
    from chaoslab.live.cluster import LocalCluster

    cluster = LocalCluster.load(_state_dir(state, name))
    if cluster is None:
        console.print(f"no cluster in {_state_dir(state, name)}")
        raise typer.Exit(1)
    rows = cluster.status()
    console.print(f"{cluster.state.dir}: phase {cluster.state.phase}")
    for r in rows:
        health = {True: "healthy", False: "unhealthy", None: "-"}[r.healthy]
        if r.name.startswith("netns "):
            run = "present" if r.running else "missing"
        else:
            run = f"running (pid {r.pid})" if r.running else f"not running (pid {r.pid} gone)"
        console.print(f"  {r.name:28} {run:28} {health} {r.detail}".rstrip(), markup=False)
    left = [r.name for r in rows if not r.running]
    if left:
        console.print(f"left over: state for {len(left)} stopped processes; run `down`")
    orphan = _drill_dataplane_status(cluster.state.dir)
    if left or orphan or any(r.healthy is False for r in rows):
        raise typer.Exit(1)


def _drill_dataplane_status(state_dir: Path) -> bool:
    """Print the data plane a drill built for the cluster (`state.DATAPLANE_LINK`); True
    when that drill is gone and left it (a SIGKILL its reaper did not see through)."""
    from chaoslab.live.cluster.dataplane import DataPlane, DataPlaneError
    from chaoslab.live.cluster.state import read_dataplane_link

    link = read_dataplane_link(state_dir)
    if link is None:
        return False
    owner = "unknown" if link.owner is None else f"pid {link.owner}"
    live = link.owner is None or link.owner_alive()
    console.print(
        f"  drill data plane {link.dir} (drill {owner}, {'running' if live else 'gone'})",
        markup=False,
    )
    try:
        rows = DataPlane.load(link.dir).status() if (link.dir / "state.json").exists() else {}
    except DataPlaneError as e:
        rows = {"state": str(e)}
    for what, how in rows.items():
        console.print(f"    {what:26} {how}", markup=False)
    if live:
        return False
    console.print(f"left over: the data plane of a drill that is gone ({link.dir}); run `down`")
    return True


@app.command()
@user_errors
def down(
    state: StateOpt = None,
    name: NameOpt = "default",
    purge: Annotated[
        bool,
        typer.Option("--purge", help="Remove the components' logs too (kept by default)."),
    ] = False,
) -> None:
    """Stop every process `up` started (by PID, newest first) and a drill's leftover data
    plane, and remove the state folder but the components' logs (all of it with --purge)."""
    from chaoslab.live.cluster import LocalCluster
    from chaoslab.live.cluster.reaper import linked_dataplane_down

    d = _state_dir(state, name)
    cluster = LocalCluster.load(d)
    if cluster is None and purge:
        _purge_logs(d)
        return
    if cluster is None:
        console.print(f"nothing to do: no cluster in {d}")
        return
    notes = linked_dataplane_down(d)
    notes += cluster.down(keep_logs=not purge)
    for note in notes:
        console.print(note, markup=False)
    if not purge and (d / "logs").is_dir():
        console.print(f"logs kept in {d / 'logs'} (remove them with down --purge)", markup=False)


def _purge_logs(d: Path) -> None:
    """Remove what ``down`` kept of a cluster (a folder holding only ``logs`` and earlier
    clusters' ``logs.N``), nothing else."""
    import shutil

    from chaoslab.live.cluster.state import is_rotated_logs

    try:
        entries = sorted(d.iterdir())
    except OSError:
        entries = []
    if d / "logs" not in entries or not all(p == d / "logs" or is_rotated_logs(p) for p in entries):
        console.print(f"nothing to do: no cluster nor kept logs in {d}")
        return
    shutil.rmtree(d)
    console.print(f"removed {d}", markup=False)
