"""A drill on a cluster that has no data plane builds one (`LocalSession`), owns it, and on
close keeps its components' logs with the cluster's; while it runs, a drill of another
process on the same cluster refuses instead of sharing it (its owner would take it down
under the second drill, and each drill's faults would land in the other's measurement).

Real control plane, brought up without its own data plane; the drills' data planes are
real namespaces, checked gone by name. No traffic is sent from the host namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaoslab.experiment import load_experiment
from chaoslab.live.cluster.local import LocalCluster
from chaoslab.live.cluster.state import read_dataplane_link
from chaoslab.live.cluster.target import LocalSession, cluster_meta
from chaoslab.live.lab.netns import namespaces_with_prefix

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]

#: another drill process opening its session on the same cluster
_SECOND_DRILL = """
import sys
from pathlib import Path
from chaoslab.experiment import load_experiment
from chaoslab.live.cluster.local import LocalCluster
from chaoslab.live.cluster.target import LocalSession
from chaoslab.live.cluster.hooks import LocalClusterError
exp = load_experiment(Path(sys.argv[2]))
try:
    LocalSession.open(exp, exp.live_spec(0), cluster=LocalCluster.load(Path(sys.argv[1])))
except LocalClusterError as e:
    print(e)
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def bare_cluster(
    k8s_build: Any, kwok_build: Any, ci_config: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    if os.geteuid() != 0 or not shutil.which("iptables-save"):
        pytest.skip("the data plane needs root and iptables (network namespaces)")
    state = Path(tmp_path_factory.mktemp("bare")) / "state"
    cluster = LocalCluster.up(
        ci_config, state_dir=state, name="bare", build=k8s_build, dataplane=False
    )
    try:
        yield cluster
    finally:
        cluster.down()


def test_a_drills_data_plane_is_its_own_and_leaves_its_logs_with_the_clusters(
    bare_cluster: LocalCluster, tmp_path: Path
) -> None:
    text = (ROOT / "experiments" / "cluster-pod-delete.yaml").read_text()
    path = tmp_path / "cluster-pod-delete.yaml"
    path.write_text(text)
    exp = load_experiment(path)
    s = LocalSession.open(exp, exp.live_spec(0), cluster=bare_cluster)
    prefix = s.dataplane().state.prefix
    try:
        assert s.owned_dataplane and namespaces_with_prefix(prefix)
        second = subprocess.run(
            [sys.executable, "-c", _SECOND_DRILL, str(bare_cluster.state.dir), str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert second.returncode == 3, second.stderr
        assert f"drill pid {os.getpid()} owns the data plane of this cluster" in second.stdout
        assert (s.dataplane_dir / "state.json").exists()  # the first drill's, untouched
        kept = Path(cluster_meta(s)["dataplane_logs"])
    finally:
        notes = s.close()
    assert namespaces_with_prefix(prefix) == []
    assert f"data plane logs kept in {kept}" in notes
    logs = {p.name for p in kept.iterdir()}
    assert {"bridge-host.log", "kube-proxy-n1.log", "runtime-n1.log"} <= logs
    assert read_dataplane_link(bare_cluster.state.dir) is None
