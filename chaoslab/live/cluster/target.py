"""The local control plane as a drill target: `LocalClusterTarget`, a `KubeTarget`.

``chaoslab drill`` with ``live: {cluster: local}`` runs the same drill as against any
cluster (one trial loop in `chaoslab.live.engine`, the observation and injection of
`chaoslab.live.k8s`); this module adds only what the cluster on this machine needs:

- `LocalSession`: the cluster (attached from ``live.cluster_state``, or brought up from the
  experiment with `config_from_experiment` and taken down afterwards), its data plane (the
  one recorded in the cluster's state folder, or one built here: a namespace per node with
  the real kube-proxy and the runtime stand-in, `chaoslab.live.cluster.dataplane`), and the
  drill's identity: the ServiceAccount of ``deploy/rbac.yaml``, applied by the admin, with a
  token from the TokenRequest API, so the real RBAC authorizer checks every call;
- the prober inside the data plane's client namespace (`chaoslab.live.probe.NetnsProber`):
  NodePorts live on node-namespace addresses, never probed from the host namespace; a URL
  may name a node (``http://compute-1:30080/``);
- node faults through the drill's hooks: ``python -m chaoslab.live.cluster.target
  crash-node NODE`` (and ``restore-node``, ``partition``, ``heal``, ``kubelet-stop``,
  ``kubelet-start``) acts on the recorded cluster and data plane and prints the instant of
  the fault on CLOCK_MONOTONIC, which becomes the trial's t0 (the hook's own start-up is
  not counted);
- milestones beyond the API's: ``proxy.synced`` (the probed nodes' kube-proxy rules, read
  with ``iptables-save`` in their namespaces, no longer DNAT to a faulted pod),
  ``probe.first_failed`` and ``probe.last_failed`` (taken from the probes by
  `chaoslab.live.engine` for every target, predicted by putting the same prober on the
  model's a(t), `chaoslab.compare.as_probed`: one definition, `chaoslab.outage.probe_milestones`).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from chaoslab.errors import LiveError, UserError
from chaoslab.live.cluster.hooks import ENV_STATE, LocalClusterError, main
from chaoslab.live.k8s.drill import KubeTarget
from chaoslab.outage import PROBE_MILESTONES

if TYPE_CHECKING:
    from chaoslab.experiment import Experiment
    from chaoslab.live.cluster.dataplane import DataPlane
    from chaoslab.live.cluster.local import LocalCluster
    from chaoslab.live.engine import DrillContext
    from chaoslab.live.k8s.drill import DrillPlan
    from chaoslab.live.k8s.spec import LiveSpec

__all__ = ["PROBE_MILESTONES", "LocalClusterTarget", "LocalSession", "main"]

#: the ServiceAccount deploy/rbac.yaml binds
SA_NAMESPACE, SA_NAME = "chaoslab", "chaoslab-drill"
#: lifetime asked for the drill's token (the API server may shorten it)
TOKEN_SECONDS = 6 * 3600
#: how often the probed nodes' NAT rules are read for ``proxy.synced`` (iptables-save in a
#: namespace costs a fork and a table dump: 10 reads a second keep one core mostly free)
RULES_INTERVAL = 0.1
_REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------- session


@dataclass
class LocalSession:
    """The cluster, data plane and credentials one drill runs with."""

    cluster: LocalCluster
    dataplane_dir: Path
    kubeconfig: Path
    workdir: Path
    owned_cluster: bool = False
    owned_dataplane: bool = False
    closed: bool = False
    #: run_drill closes it (a session plan_drill opened itself)
    close_after_run: bool = False
    _env_before: str | None = None
    #: takes the drill's own cluster down if the drill dies without `close` (a SIGKILL)
    reaper: subprocess.Popen[bytes] | None = None
    #: on a cluster the drill did not bring up: takes down the data plane it built
    dp_reaper: subprocess.Popen[bytes] | None = None

    @classmethod
    def open(
        cls, exp: Experiment, spec: LiveSpec, cluster: LocalCluster | None = None
    ) -> LocalSession:
        """Attach to (or bring up) the cluster, make sure it has a data plane, bind the
        drill's ServiceAccount; everything made here is undone by `close`."""
        import atexit

        owned = False
        reaper = None
        if cluster is None:
            cluster, owned, reaper = _cluster(exp, spec)
        workdir = Path(tempfile.mkdtemp(prefix="chaoslab-drill-"))
        s = cls(cluster, Path(), workdir / "drill.kubeconfig", workdir, owned_cluster=owned)
        s.reaper = reaper
        s._env_before = os.environ.get(ENV_STATE)
        try:
            s.dataplane_dir, s.owned_dataplane, s.dp_reaper = _dataplane(cluster, exp, owned)
            os.environ[ENV_STATE] = str(cluster.state.dir)  # for the hook commands
            _apply_rbac(cluster, _rbac_path(spec), spec.namespace)
            _ensure_pdb(cluster, spec)
            _write_token_kubeconfig(cluster, s.kubeconfig)
        except BaseException:
            s.close()
            raise
        atexit.register(s.close)  # a dry run ends without run_drill
        return s

    def dataplane(self) -> DataPlane:
        from chaoslab.live.cluster.dataplane import DataPlane

        return DataPlane.load(self.dataplane_dir)

    def close(self) -> list[str]:
        """Take down what the session brought up (the data plane first), remove its files."""
        if self.closed:
            return []
        self.closed = True
        notes: list[str] = []
        if self._env_before is None:
            os.environ.pop(ENV_STATE, None)
        else:
            os.environ[ENV_STATE] = self._env_before
        if self.owned_dataplane:
            notes += _dataplane_down(self.cluster.state.dir, self.dataplane_dir)
        _stop_reaper(self.dp_reaper)
        self.dp_reaper = None
        refresh(self.cluster)
        if self.owned_cluster:  # its logs stay, in a folder no later drill takes
            notes += self.cluster.down(keep_logs=True)
        _stop_reaper(self.reaper)
        self.reaper = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        return notes


def cluster_meta(session: LocalSession) -> dict[str, Any]:
    """Where the run's cluster lives and where its components' logs stay (a drill's own
    cluster: kept after it goes down, the newest 10 such folders; an attached one: until
    ``chaoslab cluster down --purge``), and those of the data plane the drill built (in
    the cluster's logs folder), for the run folder's ``meta.json``."""
    from chaoslab.live.cluster.state import dataplane_logs_dir

    c = session.cluster
    meta: dict[str, Any] = {
        "state": str(c.state.dir),
        "logs": str(c.layout.logs),
        "brought_up_by_drill": session.owned_cluster,
    }
    if session.owned_dataplane:  # its components' logs, moved there when it goes down
        meta["dataplane_logs"] = str(dataplane_logs_dir(c.state.dir, session.dataplane_dir))
    return meta


def refresh(cluster: LocalCluster) -> None:
    """Re-read the cluster's state file: hook commands restart kubelet stand-ins from
    their own process and record them there, and ``down`` must stop those too."""
    from chaoslab.live.cluster.state import ClusterState

    fresh = ClusterState.load(cluster.state.dir)
    if fresh is not None:
        cluster.state = fresh
    if getattr(cluster, "_dataplane", None) is not None:
        cluster._dataplane = None  # its kwok records too: read again when next needed


def start_drill_reaper(state_dir: Path) -> subprocess.Popen[bytes] | None:
    """A reaper (`chaoslab.live.cluster.reaper`) watching this drill process: should the
    drill die without closing its session (SIGKILL skips every ``finally``), it takes the
    cluster in ``state_dir`` and the data plane it links down, the logs kept as
    ``down(keep_logs=True)`` keeps them. Its own notes go to ``logs/reaper.log`` there.
    None when it cannot be started (the drill runs unguarded, as it did before)."""
    from chaoslab.live.cluster.reaper import start_reaper

    try:
        return start_reaper([state_dir], state_dir / "logs" / "reaper.log", keep_logs=True)
    except OSError:
        return None


def _stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    if reaper is None:
        return
    with contextlib.suppress(OSError):
        reaper.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        reaper.wait(timeout=10)


def _cluster(
    exp: Experiment, spec: LiveSpec
) -> tuple[LocalCluster, bool, subprocess.Popen[bytes] | None]:
    from chaoslab.live.cluster import LocalCluster, config_from_experiment
    from chaoslab.live.cluster.state import drill_state_dir, prune_drill_dirs

    if spec.cluster_state:
        cluster = LocalCluster.load(Path(spec.cluster_state))
        if cluster is None or cluster.state.phase != "up":
            raise LocalClusterError(
                f"live.cluster_state: no cluster is up in {spec.cluster_state} "
                f"(chaoslab cluster up --state {spec.cluster_state})"
            )
        return cluster, False, None
    config = config_from_experiment(Path(exp.path))
    state_dir = drill_state_dir(exp.slug())
    # every drill's cluster has a folder of its own: the kept logs of old ones are pruned,
    # and a reaper stands in for the one fixed folder's leak guard (`_claim` refusing a
    # cluster a killed drill left behind)
    prune_drill_dirs(state_dir.parent)
    reaper = start_drill_reaper(state_dir)  # before up: a kill during up is covered too
    try:
        cluster = LocalCluster.up(config, state_dir=state_dir, name=state_dir.name)
    except BaseException:
        _stop_reaper(reaper)
        raise
    return cluster, True, reaper


def _rbac_path(spec: LiveSpec) -> Path:
    return Path(spec.rbac) if spec.rbac else _REPO / "deploy" / "rbac.yaml"


def _dataplane(
    cluster: LocalCluster, exp: Experiment, owned_cluster: bool
) -> tuple[Path, bool, subprocess.Popen[bytes] | None]:
    """The cluster's data plane folder, whether this session built it, and the reaper
    guarding one built on a cluster the drill did not bring up (that of a drill's own
    cluster guards its data plane too). A data plane a killed drill left is taken down
    first."""
    from chaoslab.live.cluster.reaper import linked_dataplane_down
    from chaoslab.live.cluster.state import read_dataplane_link

    if (cluster.layout.dir / "dataplane" / "state.json").exists():
        return cluster.layout.dir / "dataplane", False, None
    link = read_dataplane_link(cluster.state.dir)
    if link is not None and link.owner_alive() and link.owner != os.getpid():
        # not shared: its owner takes it down when it ends, and the faults of one drill
        # would hit the other's measurement
        what = "owns" if (link.dir / "state.json").exists() else "is building"
        raise LocalClusterError(
            f"{cluster.state.dir}: drill pid {link.owner} {what} the data plane of this "
            f"cluster ({link.dir}) and takes it down when it ends; run after it"
        )
    live = link is not None and (link.owner is None or link.owner_alive())
    if link is not None and live and (link.dir / "state.json").exists():
        return link.dir, False, None  # this process's other session's, or unowned: shared
    linked_dataplane_down(cluster.state.dir)  # what a killed drill left, if anything
    reaper = None if owned_cluster else start_dataplane_reaper(cluster.state.dir)
    try:
        return _build_dataplane(cluster, exp), True, reaper
    except BaseException:
        _stop_reaper(reaper)
        raise


def start_dataplane_reaper(state_dir: Path) -> subprocess.Popen[bytes] | None:
    """A reaper that takes down the data plane this drill links in the cluster folder
    ``state_dir`` should the drill die without closing its session; the cluster, which
    the drill did not bring up, stays. Notes go to ``logs/drill-reaper.log`` there. None
    when it cannot be started."""
    from chaoslab.live.cluster.reaper import start_reaper

    log = state_dir / "logs" / "drill-reaper.log"
    try:
        return start_reaper([state_dir], log, dataplane_only=True)
    except OSError:
        return None


def _dataplane_down(cluster_dir: Path, d: Path) -> list[str]:
    """Take down the data plane this session built in ``d``, remove its folder and the
    cluster's link to it (if the link still names it)."""
    from chaoslab.live.cluster.reaper import remove_dataplane
    from chaoslab.live.cluster.state import (
        DATAPLANE_LINK,
        dataplane_logs_dir,
        read_dataplane_link,
    )

    notes = remove_dataplane(d, dataplane_logs_dir(cluster_dir, d))
    link = read_dataplane_link(cluster_dir)
    if link is not None and link.dir == d:
        (cluster_dir / DATAPLANE_LINK).unlink(missing_ok=True)
    return notes


def _claim_dataplane_dir(cluster_dir: Path) -> Path:
    """A new folder for the drill's data plane, ``/tmp/dpdXXXXXXXX/dp`` (short: unix socket
    paths are limited to 107 bytes). The cluster's link names it *before* the temporary
    folder is made, so a SIGKILL from here on leaves a link the reaper, ``cluster status``
    and ``cluster down`` follow."""
    from chaoslab.live.cluster.state import (
        DATAPLANE_LINK,
        DATAPLANE_TMP_PREFIX,
        write_dataplane_link,
    )

    for _ in range(16):
        tmp = Path("/tmp") / f"{DATAPLANE_TMP_PREFIX}{secrets.token_hex(4)}"
        if tmp.exists():
            continue
        write_dataplane_link(cluster_dir, tmp / "dp")
        try:
            tmp.mkdir(mode=0o700)
        except FileExistsError:  # made since: never name another's folder
            continue
        return tmp / "dp"
    (cluster_dir / DATAPLANE_LINK).unlink(missing_ok=True)
    raise LocalClusterError("no free /tmp/dpd* folder for the data plane")


def _build_dataplane(cluster: LocalCluster, exp: Experiment) -> Path:
    """Node namespaces with the runtime stand-in (as ``system:node:<node>``) and the real
    kube-proxy (as ``system:kube-proxy``, its timers from the experiment). On a failure
    what was built, its folder and the link go again."""
    from chaoslab.live.cluster.build import find_build
    from chaoslab.live.cluster.dataplane import DataPlane, KubeProxy, node_networks

    kc = cluster.kubeconfig
    d = _claim_dataplane_dir(cluster.state.dir)
    try:
        dp = DataPlane.create(d, uuid.uuid4().hex[:5], node_networks(kc), kubeconfig=kc)
        build = cluster.layout.build or find_build()
        # the kubelet's back-off the cluster was brought up with (None: the catalogue's)
        backoff = cluster.state.info.get("restart_backoff_s")
        kp = KubeProxy(
            str(build.bin("kube-proxy")),
            str(cluster.layout.kubeconfig("kube-proxy")),
            extra_args=_kube_proxy_flags(exp),
            restart_backoff=(float(backoff[0]), float(backoff[1])) if backoff else None,
        )
        for node in dp.nodes:
            dp.start_runtime(node, cluster.layout.kubeconfig(f"node-{node}"))
            dp.start_kube_proxy(node, kp)
    except BaseException:
        _dataplane_down(cluster.state.dir, d)
        raise
    return d


def _kube_proxy_flags(exp: Experiment) -> tuple[str, ...]:
    """kube-proxy's timers from the experiment's parameters (one fixed value each)."""
    from chaoslab.params import ParamSet
    from chaoslab.params.dists import Fixed

    ps = ParamSet.resolve(exp.profiles, exp.overrides())
    out = []
    for flag, key in (
        ("--iptables-min-sync-period", "kube_proxy.iptables_min_sync_period"),
        ("--iptables-sync-period", "kube_proxy.iptables_sync_period"),
    ):
        v = ps[key]
        if not isinstance(v, Fixed):
            raise UserError(f"{exp.path}: params: {key}: kube-proxy takes one value")
        out.append(f"{flag}={round(v.value * 1000)}ms")
    return tuple(out)


def _apply_rbac(cluster: LocalCluster, path: Path, namespace: str) -> None:
    """Create the manifest's objects as the admin (``demo`` replaced by the workload's
    namespace, as its header says); objects that exist are left as they are."""
    import yaml
    from kubernetes import utils

    try:
        text = path.read_text()
    except OSError as e:
        raise UserError(f"live.rbac: {path}: {e.strerror}") from None
    text = text.replace("namespace: demo", f"namespace: {namespace}")
    api = cluster.admin_client()
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        try:
            utils.create_from_dict(api, doc)
        except utils.FailToCreateError as e:
            bad = [x for x in e.api_exceptions if getattr(x, "status", 0) != 409]
            if bad:
                raise LocalClusterError(f"{path}: {doc.get('kind')}: {bad[0].reason}") from None


def _ensure_pdb(cluster: LocalCluster, spec: LiveSpec) -> None:
    """A PodDisruptionBudget of one unavailable pod for the workload, as an operator of a
    replicated service has (a drain then evicts through it); kept when one exists."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pol = client.PolicyV1Api(cluster.admin_client())
    if pol.list_namespaced_pod_disruption_budget(spec.namespace).items:
        return
    wl = client.AppsV1Api(cluster.admin_client())
    read = {
        "Deployment": wl.read_namespaced_deployment,
        "StatefulSet": wl.read_namespaced_stateful_set,
        "DaemonSet": wl.read_namespaced_daemon_set,
    }[spec.workload.kind]
    workload: Any = read(spec.workload.name, spec.namespace)
    selector = workload.spec.selector
    body: Any = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": spec.workload.name, "namespace": spec.namespace},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector.match_labels}},
    }
    with contextlib.suppress(ApiException):
        pol.create_namespaced_pod_disruption_budget(spec.namespace, body)


def _write_token_kubeconfig(cluster: LocalCluster, path: Path) -> None:
    """A kubeconfig that authenticates with a bound token of the drill's ServiceAccount."""
    import yaml
    from kubernetes import client

    core = client.CoreV1Api(cluster.admin_client())
    # no audiences: the API server's own (its --api-audiences, else the issuer)
    spec = client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
    req = client.AuthenticationV1TokenRequest(spec=spec)
    status = core.create_namespaced_service_account_token(SA_NAME, SA_NAMESPACE, req).status
    if status is None or not status.token:
        raise LocalClusterError(f"no token issued for {SA_NAMESPACE}/{SA_NAME}")
    token = status.token
    kc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.layout.url("apiserver"),
                    "certificate-authority": str(cluster.layout.pki.ca_cert),
                },
            }
        ],
        "users": [{"name": SA_NAME, "user": {"token": token}}],
        "contexts": [{"name": SA_NAME, "context": {"cluster": "local", "user": SA_NAME}}],
        "current-context": SA_NAME,
    }
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)  # it carries the token
    with os.fdopen(fd, "w") as fh:
        fh.write(yaml.safe_dump(kc))


def _spread(cluster: LocalCluster, spec: LiveSpec, timeout: float, log: Any) -> None:
    """Put the workload back to one pod per node, as the prediction assumes: a replacement
    made while its node was faulted shares a node afterwards (nothing rebalances a
    Deployment). As the admin, a pod of a doubled node is deleted at once and the
    scheduler (anti-affinity) puts the new one on a free node."""
    from kubernetes import client

    core = client.CoreV1Api(cluster.admin_client())
    sel = f"app={cluster.layout.config.app}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed: list[Any] = core.list_namespaced_pod(spec.namespace, label_selector=sel).items
        pods = [p for p in listed if p.metadata.deletion_timestamp is None]
        by_node: dict[str, list[Any]] = {}
        for p in pods:
            by_node.setdefault(p.spec.node_name or "", []).append(p)
        extra = [ps[-1] for n, ps in by_node.items() if n and len(ps) > 1]
        if not extra and "" not in by_node:
            return
        for p in extra:
            log(f"spreading {spec.workload.name}: deleting {p.metadata.name} on {p.spec.node_name}")
            core.delete_namespaced_pod(p.metadata.name, spec.namespace, grace_period_seconds=0)
        time.sleep(spec.poll)
    raise LocalClusterError(f"{spec.workload.name}: not one pod per node within {timeout:g} s")


# --------------------------------------------------------------------------- rules


@dataclass
class RulesWatch:
    """Reads the NAT rules of the probed nodes until none DNATs to a faulted pod's
    endpoint; ``t`` is the first snapshot where that holds (CLOCK_MONOTONIC)."""

    dp: DataPlane
    nodes: list[str]
    service: str
    gone: frozenset[str]
    t: float = math.nan
    detail: str = ""
    error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RulesWatch:
        self._thread = threading.Thread(target=self._run, name="chaoslab-rules", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                snaps = [self.dp.rules(n) for n in self.nodes]
                eps = {
                    n: _service_endpoints(s, self.service)
                    for n, s in zip(self.nodes, snaps, strict=True)
                }
                if all(not (e & self.gone) for e in eps.values()):
                    self.t = snaps[0].t
                    self.detail = "; ".join(f"{n}: {len(e)} endpoints" for n, e in eps.items())
                    return
                self._stop.wait(RULES_INTERVAL)
        except LiveError as e:  # a node namespace torn down under it: no milestone
            self.error = str(e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _service_endpoints(snap: Any, service: str) -> frozenset[str]:
    """Endpoints of ``namespace/name`` over all its ports in one rules snapshot."""
    out: set[str] = set()
    for name, eps in {**snap.services, **snap.local}.items():
        if name == service or name.startswith(f"{service}:"):
            out |= eps
    return frozenset(out)


# --------------------------------------------------------------------------- target


class LocalClusterTarget(KubeTarget):
    """`KubeTarget` on the local control plane: the prober in the client namespace, node
    faults by hook, the kube-proxy and probe milestones."""

    shared_clock = True  # the API server runs on this machine

    def __init__(self, plans: list[DrillPlan], session: LocalSession) -> None:
        super().__init__(plans)
        self.session = session
        self.dp = session.dataplane()
        self.milestone_names = [*self.milestone_names, *PROBE_MILESTONES]
        self._rules: RulesWatch | None = None
        self._probe_dir = session.workdir / "probes"

    def open(self, ctx: DrillContext) -> None:
        super().open(ctx)
        ctx.writer.update_meta(local_cluster=cluster_meta(self.session))

    # -- probing -----------------------------------------------------------------------

    def _url(self, url: str) -> str:
        """A node name as the host becomes that node's address on the data plane's switch;
        any other host must be an address of the data plane (the client has no route out)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in self.dp.nodes:
            netloc = self.dp.node_ip(host) + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        if host not in {self.dp.node_ip(n) for n in self.dp.nodes}:
            raise UserError(
                f"live.urls: {url}: on the local cluster a URL names a node "
                f"({', '.join(self.dp.nodes)}) or a node address"
            )
        return url

    def _new_prober(self, cfg: Any, trial: int, n: int) -> Any:
        from chaoslab.live.probe import NetnsProber

        out = self._probe_dir / f"t{trial:03d}-{n}-{uuid.uuid4().hex[:4]}.csv"
        return NetnsProber(cfg, self.dp.client_ns, out).start()

    def _entry_nodes(self) -> list[str]:
        ips = {self.dp.node_ip(n): n for n in self.dp.nodes}
        hosts = [urlsplit(self._url(u)).hostname or "" for u in self.spec.urls]
        return [ips[h] for h in hosts if h in ips]

    # -- trial -------------------------------------------------------------------------

    def preflight(self, plan: DrillPlan, trial: int) -> None:
        _spread(self.session.cluster, plan.spec, plan.spec.preflight.timeout, self._ctx().log)
        super().preflight(plan, trial)

    def choose(self, plan: DrillPlan, trial: int) -> str:
        victim = super().choose(plan, trial)
        tr = self._trial()
        assert tr.target is not None
        gone = frozenset(self._endpoints_of(plan, tr.target.affected))
        nodes = [
            n for n in self._entry_nodes() if tr.target.node is None or n != tr.target.node.name
        ]
        service = f"{plan.spec.namespace}/{plan.spec.service}"
        self._rules = None
        if gone and nodes:
            self._rules = RulesWatch(self.dp, nodes, service, gone).start()
        return victim

    def _endpoints_of(self, plan: DrillPlan, pods: Sequence[str]) -> set[str]:
        """``ip:port`` of the affected pods as kube-proxy DNATs to them."""
        spec = plan.spec
        slices = self.kube.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{spec.namespace}/endpointslices",
            labelSelector=f"kubernetes.io/service-name={spec.service}",
        )["items"]
        out = set()
        for s in slices:
            ports = [p.get("port") for p in s.get("ports") or []]
            for e in s.get("endpoints") or []:
                if (e.get("targetRef") or {}).get("name") in pods:
                    out |= {f"{a}:{p}" for a in e.get("addresses") or [] for p in ports}
        return out

    def inject(self, plan: DrillPlan, victim: str) -> float:
        t_hook = super().inject(plan, victim)
        tr = self._trial()
        assert tr.tracker is not None
        t = _fault_at(str(tr.info.get("hook_output", "")))
        if t is None:
            return t_hook
        tr.info.update(t0_hook=t_hook, t0_uncertainty_s=0.0)
        tr.tracker.t0 = t
        return t

    def observe(self, plan: DrillPlan, victim: str, t0: float) -> Any:
        out = super().observe(plan, victim, t0)
        rw, self._rules = self._rules, None
        if rw is not None:
            rw.stop()
            if math.isfinite(rw.t) and rw.t >= t0:
                self._milestone(out, "proxy.synced", rw.t - t0, "iptables-save", rw.detail)
            elif rw.error:
                out.info["rules_error"] = rw.error
        return out

    @staticmethod
    def _milestone(out: Any, name: str, t: float, source: str, detail: str) -> None:
        out.milestones[name] = t
        row = {"milestone": name, "t": t, "t_server": math.nan, "detail": detail}
        out.milestone_rows.append({**row, "source": source})

    def restore(self, plan: DrillPlan, victim: str) -> bool:
        if self._rules is not None:
            self._rules.stop()
            self._rules = None
        ok = bool(super().restore(plan, victim))
        refresh(self.session.cluster)
        return ok


def _fault_at(output: str) -> float | None:
    """The ``fault_at=<CLOCK_MONOTONIC s>`` line a node hook of this module prints."""
    for line in output.splitlines():
        if line.startswith("fault_at="):
            with contextlib.suppress(ValueError):
                return float(line.split("=", 1)[1])
    return None


if __name__ == "__main__":
    sys.exit(main())
