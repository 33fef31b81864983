"""The real control plane for tests marked ``cluster``.

Without Go the control plane cannot exist here, so those tests skip with one line. With
Go, a missing or failed build is a failure, never a skip: ``./install.sh`` builds it
(``tools/build.sh``), and a machine that has Go must run these tests.

``local_cluster`` brings one cluster up for the whole session, with CI-sized timers, and
always takes it down again (also when a test or the start-up fails). A pytest killed from
outside (SIGKILL: a CI timeout, the OOM killer) runs no teardown: ``_reaper`` watches this
process and takes down every cluster and data plane left under the session's temporary
folder once it is gone (`chaoslab.live.cluster.reaper`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chaoslab.live.cluster import (
    Build,
    BuildMissing,
    ClusterConfig,
    LocalCluster,
    find_build,
    go_available,
)
from chaoslab.live.cluster.reaper import start_reaper
from chaoslab.params import ParamSet

#: timers small enough for CI; the model is checked with the same values
CI_TIMERS = {
    "kube_controller_manager.node_monitor_period": "1s",
    "kube_controller_manager.node_monitor_grace_period": "8s",
    "kubelet.node_lease_duration_seconds": "4s",
    "kube_apiserver.default_not_ready_toleration_seconds": "10s",
    "kube_apiserver.default_unreachable_toleration_seconds": "10s",
}


@pytest.fixture(scope="session", autouse=True)
def _reaper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's temporary folder, watched by a reaper for as long as pytest runs;
    clusters and data planes of the tests live inside it."""
    base = tmp_path_factory.getbasetemp()
    reaper = start_reaper([base], base / "reaper.log")
    try:
        yield base
    finally:
        reaper.terminate()  # pytest is alive: its own teardown did the work
        reaper.wait(30)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster: needs the real control plane built from Go modules (tools/build.sh); "
        "skipped only where Go is missing",
    )


def require_build(module: str = "k8s") -> Build:
    """The build, or a skip (no Go) / a failure (Go, but no complete build)."""
    if not go_available():
        pytest.skip("go not found: the local Kubernetes control plane cannot be built here")
    try:
        return find_build(module)
    except BuildMissing as e:
        pytest.fail(f"Go is installed but the control plane is not built: {e}", pytrace=False)


@pytest.fixture(scope="session")
def k8s_build() -> Build:
    return require_build("k8s")


@pytest.fixture(scope="session")
def kwok_build() -> Build:
    return require_build("kwok")


@pytest.fixture(scope="session")
def ci_config() -> ClusterConfig:
    return ClusterConfig.from_params(ParamSet.resolve(overrides=CI_TIMERS), source="CI timers")


@pytest.fixture(scope="session")
def local_cluster(
    k8s_build: Build,
    kwok_build: Build,
    ci_config: ClusterConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalCluster]:
    state = Path(tmp_path_factory.mktemp("cluster")) / "state"
    cluster = LocalCluster.up(ci_config, state_dir=state, name="pytest", build=k8s_build)
    try:
        yield cluster
    finally:
        cluster.down()
