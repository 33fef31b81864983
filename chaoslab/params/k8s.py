"""Kubernetes control-plane, kubelet, kube-proxy and workload knobs, and the k8s profiles.

Each value's source names the upstream file, PR, KEP or docs page it was read from
(``docs/model-kubernetes.md`` explains the mechanisms).
Values marked ``[assumption]`` have no published default; the source says what bounds them.
"""

from __future__ import annotations

from chaoslab.params.catalogue import Param, register, register_profile, require_positive
from chaoslab.params.dists import Fixed, LogNormal

KK = "kubernetes/kubernetes"
GH = "https://github.com/kubernetes/kubernetes/blob"
NLC = "pkg/controller/nodelifecycle/node_lifecycle_controller.go"

register(
    [
        # ---------------------------------------------------------------- kubelet
        Param(
            "kubelet.node_lease",
            "flag",
            True,
            "Lease heartbeats: alpha 1.13 (off), beta 1.14 (on), GA 1.17; none in 1.10",
            "KEP-589 (kubernetes/enhancements keps/sig-node/589-efficient-node-heartbeats)",
            "Heartbeat is a Lease renewal (true) or, before NodeLease, a NodeStatus post (false).",
        ),
        Param(
            "kubelet.node_status_update_frequency",
            "duration",
            Fixed(10.0),
            "10 s since 2015 (pre-1.0) to now",
            f"{KK} pkg/kubelet/apis/config/v1beta1/defaults.go; PR #6535",
            "How often the kubelet computes node status; the heartbeat itself before NodeLease.",
        ),
        Param(
            "kubelet.node_status_report_frequency",
            "duration",
            Fixed(300.0),
            "1m in 1.13-1.16, 5m from 1.17",
            f"{KK} pkg/kubelet/apis/config/v1beta1/defaults.go; PR #84007 (CHANGELOG-1.17)",
            "With NodeLease, unchanged status is posted only this often (not a heartbeat).",
        ),
        Param(
            "kubelet.node_lease_duration_seconds",
            "duration",
            Fixed(40.0),
            "40 s since NodeLease (1.13)",
            f"{KK} pkg/kubelet/apis/config/v1beta1/defaults.go (NodeLeaseDurationSeconds = 40)",
            "Lease duration; the kubelet renews every node_lease_renew_interval_fraction of it.",
        ),
        Param(
            "kubelet.node_lease_renew_interval_fraction",
            "ratio",
            Fixed(0.25),
            "constant since 1.13",
            f"{KK} pkg/kubelet/kubelet.go (nodeLeaseRenewIntervalFraction = 0.25)",
            "Renew interval = fraction x lease duration (10 s by default).",
        ),
        Param(
            "kubelet.heartbeat_jitter_factor",
            "ratio",
            Fixed(0.04),
            "constant, read at v1.37.2 (kubelet) and component-helpers v0.33.13, v0.37.2 "
            "(Lease); the same 0.04 at v1.10.13 for NodeStatus",
            f"{GH}/v1.37.2/pkg/kubelet/kubelet.go (wait.JitterUntil(syncNodeStatus, "
            "nodeStatusUpdateFrequency, 0.04, true, ...)); k8s.io/component-helpers "
            "apimachinery/lease/controller.go Run (wait.JitterUntilWithContext(c.sync, "
            "c.renewInterval, 0.04, true)); wait.Jitter: d + U(0, factor) x d",
            "Each heartbeat (Lease renewal or NodeStatus post) waits its period x "
            "U(1, 1 + factor) after the previous one; the model's heartbeat grid uses the "
            "mean, period x (1 + factor / 2).",
        ),
        Param(
            "kubelet.node_lease_retry_max",
            "duration",
            Fixed(7.0),
            "since NodeLease (1.13)",
            "kubernetes/website content/en/docs/reference/node/node-status.md (Heartbeats: "
            "failed renewals retried with exponential backoff from 200 ms capped at 7 s)",
            "After a partition heals, the first Lease renewal lands within this cap.",
        ),
        Param(
            "kubelet.prestop_grace_extension",
            "duration",
            Fixed(2.0),
            "all versions",
            "kubernetes/website content/en/docs/concepts/workloads/pods/pod-lifecycle.md "
            "(a preStop hook still running at the end of the grace period gets a one-off "
            "small grace period extension of 2 seconds)",
            "How long a preStop hook may overrun terminationGracePeriodSeconds.",
        ),
        Param(
            "kubelet.pleg_relist_period",
            "duration",
            Fixed(1.0),
            "current",
            f"{KK} pkg/kubelet/kubelet.go (genericPlegRelistPeriod = 1 s)",
            "How often the kubelet relists containers and notices that one died.",
        ),
        Param(
            "kubelet.pleg_on_demand_relist",
            "flag",
            True,
            "1.36+ (PLEGOnDemandRelist beta on in 1.36, GA locked on in 1.37)",
            f"{GH}/v1.37.2/pkg/kubelet/kubelet.go lines 2321-2326 (a sync that changed "
            "containers ends with RequestPodRelist) and pkg/kubelet/pleg/generic.go lines "
            "218-222 (that pod is relisted at once); pkg/features/kube_features.go lines "
            "1930-1933",
            "The pod worker relists a pod right after a sync that started or stopped one of "
            "its containers: a restarted container is seen running (restartCount, "
            "state.running, the first readiness probe) milliseconds after its start, not "
            "at the next periodic relist.",
        ),
        Param(
            "kubelet.container_runtime_start",
            "duration",
            Fixed(0.0),
            "[assumption] any version",
            "[assumption] the CRI CreateContainer + StartContainer of a container whose image "
            "is on the node: milliseconds next to an app's start-up (the hollow node's fake "
            "runtime, docs/live-pod-kill.md: 2-6 ms); set it for a slow runtime",
            "From the kubelet's sync deciding to (re)start a container to its process "
            "running (state.running.startedAt).",
        ),
        Param(
            "kubelet.container_restart_backoff_initial",
            "duration",
            Fixed(10.0),
            "all versions (new gates alpha 1.32/1.33 change it)",
            f"{KK} pkg/kubelet/kubelet.go (containerBackOffPeriod); docs pod-lifecycle.md",
            "Back-off before the second restart; the first restart is immediate, then it doubles.",
        ),
        Param(
            "kubelet.container_restart_backoff_max",
            "duration",
            Fixed(300.0),
            "all versions (KubeletCrashLoopBackOffMax alpha 1.32 makes it configurable)",
            f"{KK} pkg/kubelet/apis/config/v1beta1/defaults.go (MaxContainerBackOff = 300 s)",
            "Cap of the restart back-off.",
        ),
        Param(
            "kubelet.status_sync_period",
            "duration",
            Fixed(10.0),
            "current",
            f"{KK} pkg/kubelet/status/status_manager.go (syncPeriod = 10 s)",
            "Period of the kubelet's status reconciliation: after a partition heals, pods the "
            "controller marked NotReady are set Ready again within this period.",
        ),
        Param(
            "kubelet.node_boot_time",
            "duration",
            LogNormal(60.0, 180.0),
            "[assumption] any version",
            "[assumption] power-on to a running kubelet depends on the hardware/VM; "
            "measure yours and set it (empirical(...) takes measured values)",
            "Time from a crashed node's power-on to its kubelet heartbeating again.",
        ),
        # ------------------------------------------------ kube-controller-manager
        Param(
            "kube_controller_manager.node_monitor_period",
            "duration",
            Fixed(5.0),
            "5 s in 1.10 and now",
            f"{KK} KubeCloudShared defaults (SetDefaults_KubeCloudSharedConfiguration)",
            "Period of monitorNodeHealth passes.",
        ),
        Param(
            "kube_controller_manager.node_monitor_grace_period",
            "duration",
            Fixed(50.0),
            "40 s up to 1.31; 50 s from 1.32",
            f"{KK} PR #126287; CHANGELOG-1.32; "
            "pkg/controller/nodelifecycle/config/v1alpha1/defaults.go",
            "A node whose heartbeat was last seen this long ago goes Ready -> Unknown.",
        ),
        Param(
            "kube_controller_manager.node_startup_grace_period",
            "duration",
            Fixed(60.0),
            "60 s in 1.10 and now",
            f"{KK} pkg/controller/nodelifecycle/config/v1alpha1/defaults.go",
            "Grace period of a node that never posted Ready (after a reboot of a new node).",
        ),
        Param(
            "kube_controller_manager.pod_eviction_timeout",
            "duration",
            Fixed(300.0),
            "effective <=1.12 (legacy path); ignored with taint eviction; removed 1.27",
            f"{KK} node_lifecycle_controller.go (processNoTaintBaseEviction); "
            "PR #113710, PR #115840",
            "Legacy eviction: pods deleted when now > last heartbeat seen + this timeout.",
        ),
        Param(
            "kube_controller_manager.taint_based_evictions",
            "flag",
            True,
            "alpha 1.6-1.12 (off), beta 1.13-1.17 (on), GA 1.18, gate removed 1.20",
            "kubernetes/website feature-gates-removed (TaintBasedEvictions); PR #87487",
            "Evict through unreachable:NoExecute taints and tolerationSeconds (true) or the "
            "legacy pod_eviction_timeout path (false).",
        ),
        Param(
            "kube_controller_manager.node_eviction_rate",
            "rate",
            Fixed(0.1),
            "1.10 to now",
            f"{KK} cmd/kube-controller-manager/app/options/nodelifecyclecontroller.go",
            "Nodes per second per healthy zone that get NoExecute taints (or legacy evictions).",
        ),
        Param(
            "kube_controller_manager.secondary_node_eviction_rate",
            "rate",
            Fixed(0.01),
            "1.10 to now",
            f"{KK} options/nodelifecyclecontroller.go; node_lifecycle_controller.go "
            "(ReducedQPSFunc)",
            "Rate in a partially disrupted zone larger than large_cluster_size_threshold "
            "(0 in smaller zones).",
        ),
        Param(
            "kube_controller_manager.unhealthy_zone_threshold",
            "ratio",
            Fixed(0.55),
            "1.10 to now",
            f"{KK} node_lifecycle_controller.go (ComputeZoneState: notReady > 2 and ratio >= t)",
            "A zone with more than 2 NotReady nodes making up at least this share is "
            "PartialDisruption.",
        ),
        Param(
            "kube_controller_manager.large_cluster_size_threshold",
            "count",
            Fixed(50.0),
            "1.10 to now",
            f"{KK} options/nodelifecyclecontroller.go; ReducedQPSFunc",
            "Zones up to this size stop evicting entirely when partially disrupted.",
        ),
        Param(
            "kube_controller_manager.node_eviction_period",
            "duration",
            Fixed(0.1),
            "1.10 to now (constant)",
            f"{KK} pkg/controller/nodelifecycle/node_lifecycle_controller.go (NodeEvictionPeriod);"
            " scheduler/rate_limited_queue.go",
            "The NoExecute tainting (or legacy eviction) queue is worked every 100 ms, "
            "token bucket burst 1.",
        ),
        Param(
            "kube_controller_manager.endpointslice_updates_batch_period",
            "duration",
            Fixed(0.0),
            "added 1.18, default 0 (no batching)",
            f"{KK} PR #88745; CHANGELOG-1.18",
            "Delay the EndpointSlice controller adds before syncing a Service after a pod change.",
        ),
        Param(
            "kube_controller_manager.endpointslice_pod_queue",
            "flag",
            True,
            "from v1.35.0 (read at v1.35.4, v1.36.3, v1.37.2); not in v1.34.4 and earlier",
            f"{GH}/v1.35.4/pkg/controller/endpointslice/endpointslice_controller.go "
            "(onPodUpdate puts a PodProjectionKey on podQueue; syncPod looks the Services up "
            f"and calls serviceQueue.AddAfter, line 503); {GH}/v1.34.4/pkg/controller/"
            "endpointslice/endpointslice_controller.go (updatePod: serviceQueue.AddAfter at "
            "once, line 549); PR #134739 (CHANGELOG-1.35)",
            "A pod change reaches the Service work queue through a pod work queue first: one "
            "more controller_reaction hop before the slice is rewritten.",
        ),
        Param(
            "kube_controller_manager.endpointslice_informer_lag",
            "duration",
            LogNormal(0.02, 0.1),
            "[assumption] any version with the EndpointSlice tracker (1.19+)",
            "[assumption] the watch delivery of the controller's own write back to its "
            "EndpointSlice informer; not published. Taken as the watch part of "
            "controller_reaction (same bound: the sig-scalability API call latency SLO). "
            "The local control plane (v1.37.2, docs/live-kubernetes.md) refused 1 of 10 "
            "pod-delete 'endpoints.added' syncs quiet, 4 of 10 under load, 0.1-0.3 s after "
            "the previous write: set it larger for a loaded API server",
            "How long after the EndpointSlice controller writes a Service's slice its own "
            "informer still holds the older one: a sync within it is refused as stale "
            "(endpointslice_sync_backoff).",
        ),
        Param(
            "kube_controller_manager.endpointslice_sync_backoff",
            "duration",
            Fixed(1.0),
            "1 s in every release with the EndpointSlice controller (read at v1.31.14, "
            "v1.32.13, v1.33.13, v1.34.4, v1.35.4, v1.36.3, v1.37.2)",
            f"{GH}/v1.37.2/pkg/controller/endpointslice/endpointslice_controller.go "
            "(defaultSyncBackOff = 1 s, line 72; NewTypedItemExponentialFailureRateLimiter"
            "(defaultSyncBackOff, maxSyncBackOff), line 108; syncService returns "
            "StaleInformerCache when endpointSliceTracker.StaleSlices, line 433; handleErr "
            "AddRateLimited, Forget on success, line 349); client-go v0.37.2 util/workqueue/"
            "default_rate_limiters.go (ItemExponentialFailureRateLimiter.When: "
            "base x 2^failures, capped)",
            "First back-off of a Service sync the controller refused (stale informer cache); "
            "it doubles with each refusal in a row, up to endpointslice_max_sync_backoff, "
            "and resets on a successful sync.",
        ),
        Param(
            "kube_controller_manager.endpointslice_max_sync_backoff",
            "duration",
            Fixed(1000.0),
            "1000 s in every release with the EndpointSlice controller (read at v1.31.14 "
            "and v1.37.2)",
            f"{GH}/v1.37.2/pkg/controller/endpointslice/endpointslice_controller.go "
            "(maxSyncBackOff = 1000 s, line 74)",
            "Cap of the doubling EndpointSlice sync back-off.",
        ),
        Param(
            "kube_controller_manager.controller_reaction",
            "duration",
            LogNormal(0.02, 0.1),
            "[assumption] any version",
            "[assumption] watch delivery + controller work queue; not published. Bounded by the "
            "sig-scalability API call latency SLO (mutating calls p99 <= 1 s)",
            "Time from an API object change to a controller acting on it (one hop).",
        ),
        Param(
            "kube_controller_manager.taint_manager_delay",
            "duration",
            Fixed(0.0),
            "[assumption] any version",
            "[assumption] the taint manager reacts to node updates from its informer at once "
            f"({KK} pkg/controller/tainteviction/taint_eviction.go); one controller hop is "
            "already counted in controller_reaction",
            "Extra delay between a NoExecute taint and the taint manager scheduling evictions.",
        ),
        Param(
            "kube_controller_manager.node_informer_lag",
            "duration",
            Fixed(0.002),
            "[assumption] the drop it models is in v1.34.0 and later (same-pass tainting; read "
            "at v1.37.2); before, the taint is queued a monitor pass after the Unknown write",
            "[assumption] value derived, not published: the local control plane (v1.37.2, "
            "docs/live-kubernetes.md, node-crash) dropped 1 taint in ~50 node faults; with "
            "the tainter worked every node_eviction_period (100 ms) on an independent phase "
            "a drop has probability lag / 100 ms, so 2 ms. The mechanism: "
            f"{GH}/v1.37.2/{NLC} doNoExecuteTaintingPass (line 622: nodeLister.Get, the "
            "informer; line 649: 'Node was in a taint queue, but it's ready now', returns "
            "true: removed), scheduler/rate_limited_queue.go Try (line 237: TryAccept "
            "before the action, so the token is spent), markNodeForTainting (lines 1303, "
            "1307: the next monitor pass removes and adds the node again)",
            "How long after the node lifecycle controller writes Ready=Unknown its own node "
            "informer still holds Ready=True. A NoExecute taint the zone's queue grants "
            "within it is dropped with its token spent: the node is queued again at the "
            "next monitor pass and tainted at the next token, 1 / node_eviction_rate after "
            "the spent one.",
        ),
        Param(
            "kube_controller_manager.taint_pass",
            "choice",
            "same-pass",
            "next-pass up to 1.33 (read at v1.31.14, v1.32.13, v1.33.13); same-pass from "
            "v1.34.0 (read at v1.34.0, v1.34.4, v1.35.4, v1.36.3, v1.37.2)",
            f"{GH}/v1.33.13/{NLC} monitorNodeHealth (line 737: "
            "processTaintBaseEviction(ctx, node, &observedReadyCondition), the condition read "
            f"before this pass wrote Unknown); {GH}/v1.34.0/{NLC} monitorNodeHealth (line 737: "
            "processTaintBaseEviction(ctx, node, currentReadyCondition)); PR #120816, "
            "CHANGELOG-1.34 ('Reduced the 5s delay before tainting ...unreachable:NoExecute')",
            "Which monitor pass queues the NoExecute taint: the one that writes Ready=Unknown "
            "('same-pass') or the next one, node_monitor_period later ('next-pass').",
            choices=("same-pass", "next-pass"),
        ),
        Param(
            "kube_controller_manager.leader_elect_lease_duration",
            "duration",
            Fixed(15.0),
            "15 s in every release with leader election (read at v1.33.13 and v1.37.2)",
            "kubernetes/kubernetes staging/src/k8s.io/component-base/config/v1alpha1/"
            "defaults.go (RecommendedDefaultLeaderElectionConfiguration: LeaseDuration 15 s; "
            "read at component-base v0.37.2); client-go tools/leaderelection/"
            "leaderelection.go (a candidate acquires once observedTime + LeaseDuration has "
            "passed, observedTime = when it last saw the record change)",
            "How long a candidate controller manager waits, from the last change of the "
            "leader's Lease it observed, before it takes the lease.",
        ),
        Param(
            "kube_controller_manager.leader_elect_renew_deadline",
            "duration",
            Fixed(10.0),
            "10 s (read at v1.33.13 and v1.37.2)",
            "component-base config/v1alpha1/defaults.go (RenewDeadline 10 s); client-go "
            "leaderelection.go renew (wait.PollUntilContextTimeout(RetryPeriod, "
            "RenewDeadline): a leader that cannot renew for this long stops leading); "
            "cmd/kube-controller-manager/app/controllermanager.go OnStoppedLeading "
            "(klog.FlushAndExit: the process exits)",
            "A leading controller manager that cannot renew its Lease for this long exits "
            "(kubelet restarts it as a static pod).",
        ),
        Param(
            "kube_controller_manager.leader_elect_retry_period",
            "duration",
            Fixed(2.0),
            "2 s (read at v1.33.13 and v1.37.2)",
            "component-base config/v1alpha1/defaults.go (RetryPeriod 2 s); client-go "
            "leaderelection.go (the leader renews every RetryPeriod; candidates poll every "
            "RetryPeriod x U(1, 1 + JitterFactor), JitterFactor = 1.2)",
            "Renew period of the leader and poll period of the candidates.",
        ),
        Param(
            "kube_controller_manager.leader_elect_jitter_factor",
            "ratio",
            Fixed(1.2),
            "constant (read at client-go v0.33.13 and v0.37.2)",
            "client-go tools/leaderelection/leaderelection.go (JitterFactor = 1.2, "
            "acquire: wait.JitterUntil(..., RetryPeriod, JitterFactor, true))",
            "Jitter of a candidate's polls: each waits RetryPeriod x U(1, 1 + factor).",
        ),
        Param(
            "kube_controller_manager.release_on_exit",
            "flag",
            False,
            "ControllerManagerReleaseLeaderElectionLockOnExit alpha (off) from 1.36; absent "
            "before (read at v1.37.2)",
            f"{GH}/v1.37.2/cmd/kube-controller-manager/app/controllermanager.go "
            "(ReleaseOnCancel: the gate); k8s.io/controller-manager v0.37.2 pkg/features/"
            "kube_features.go (alpha 1.36, default false)",
            "A controller manager that exits releases its Lease (true), so a candidate takes "
            "it at its next poll, or leaves it to expire (false).",
        ),
        Param(
            "kube_controller_manager.restart_time",
            "duration",
            LogNormal(2.0, 8.0),
            "[assumption] any version",
            "[assumption] the kubelet restarts the static pod's container (the first restart "
            "is immediate, kubelet.go containerBackOffPeriod) and the binary starts; "
            "not published",
            "From a controller manager's exit (or the end of the kubelet's crash-loop "
            "back-off) to its new process reading the Lease.",
        ),
        Param(
            "kube_controller_manager.cache_sync_time",
            "duration",
            LogNormal(0.5, 3.0),
            "[assumption] any version",
            "[assumption] a new leader's informers list every object before a controller "
            "runs (cache.WaitForNamedCacheSync in node_lifecycle_controller.go Run); seconds "
            "in a small cluster, not published",
            "From acquiring the Lease to the controllers' first pass (informer cache sync).",
        ),
        # ------------------------------------------------------- kube-apiserver
        Param(
            "kube_apiserver.start_time",
            "duration",
            Fixed(0.0),
            "[assumption] any version; measured at v1.37.2 only",
            "[assumption] 0 s by default so that fault.apiserver_down_time stays the whole "
            "time no API server answers (an etcd stall, advise's apiserver-stall noise: no "
            "process restarts). No published start-up figure; kube-apiserver v1.37.2 on the "
            "local control plane (chaoslab/live/cluster), started again after a SIGKILL, "
            "answered /readyz 3.4-11.9 s after its exec (20 restarts, medians 5.6 s and "
            "8.2 s in two series of 10; a 2-core machine at load 5.7-10.2; "
            "docs/live-kubernetes.md, control-plane faults): lognormal(6s, 11s) fits them "
            "(p5 3.3 s); etcd client, post-start hooks (RBAC bootstrap) before /readyz",
            "From the end of an apiserver-down to the API server serving again: its process's "
            "start-up when the fault stopped it (set it for a stop, 0s for a stall).",
        ),
        Param(
            "kube_apiserver.default_unreachable_toleration_seconds",
            "duration",
            Fixed(300.0),
            "admission plugin enabled by default since 1.6",
            f"{KK} plugin/pkg/admission/defaulttolerationseconds/admission.go; "
            "docs taint-and-toleration.md",
            "tolerationSeconds added to pods for node.kubernetes.io/unreachable:NoExecute.",
        ),
        Param(
            "kube_apiserver.default_not_ready_toleration_seconds",
            "duration",
            Fixed(300.0),
            "admission plugin enabled by default since 1.6",
            f"{KK} plugin/pkg/admission/defaulttolerationseconds/admission.go",
            "tolerationSeconds added to pods for node.kubernetes.io/not-ready:NoExecute.",
        ),
        # ------------------------------------------------------------ kube-proxy
        Param(
            "kube_proxy.iptables_min_sync_period",
            "duration",
            Fixed(1.0),
            "0 up to 1.18; 1 s from 1.19",
            f"{KK} PR #92836 (1.19 release notes); pkg/proxy/apis/config/v1alpha1/defaults.go",
            "Minimum time between the starts of two rule syncs (BoundedFrequencyRunner).",
        ),
        Param(
            "kube_proxy.sync_runner",
            "choice",
            "completion-to-start",
            "burst-2: 1.10-1.33 (read at v1.10.13, v1.31.14, v1.32.13, v1.33.13); "
            "completion-to-start from v1.34.0 (read at v1.34.0, v1.37.2)",
            f"{GH}/v1.33.13/pkg/proxy/iptables/proxier.go NewProxier (burstSyncs := 2, "
            "async.NewBoundedFrequencyRunner) and pkg/util/async/bounded_frequency_runner.go "
            "(construct: token bucket qps 1/minSyncPeriod, burst 2; tryRun: no token -> "
            f"retry at lastRun + minInterval, lastRun = completion); {GH}/v1.34.0/pkg/proxy/"
            "runner/bounded_frequency_runner.go (NewBoundedFrequencyRunner doc: minInterval "
            "from the *completion* of one run to the start of the next, no bursts; Loop)",
            "kube-proxy's sync runner: a token bucket with burst 2 spent at each sync start "
            "('burst-2'), or min_sync_period from the previous completion, no burst "
            "('completion-to-start').",
            choices=("burst-2", "completion-to-start"),
        ),
        Param(
            "kube_proxy.iptables_sync_period",
            "duration",
            Fixed(30.0),
            "30 s in 1.10 and now",
            f"{KK} pkg/proxy/apis/config/v1alpha1/defaults.go",
            "Periodic full resync; sets the phase of the last sync before a change.",
        ),
        Param(
            "kube_proxy.sync_duration",
            "duration",
            LogNormal(0.05, 0.3),
            "[assumption] any version",
            "[assumption] iptables-restore time as seen in sync_proxy_rules_duration_seconds of "
            "small clusters; no published default",
            "Time one rule sync takes before the new rules are in the kernel.",
        ),
        Param(
            "kube_proxy.proxy_terminating_endpoints",
            "flag",
            True,
            "alpha 1.22 (off), beta 1.26 (on), GA 1.28; the Cluster-policy fallback read in "
            "the source at v1.31.14, v1.32.13, v1.33.13, v1.34.0 and v1.37.2",
            "KEP-1669 (kubernetes/enhancements keps/sig-network/1669-proxy-terminating-endpoints"
            ", 'all endpoints terminating and traffic policy is Cluster'); "
            f"{GH}/v1.37.2/pkg/proxy/topology.go CategorizeEndpoints (clusterEndpoints: "
            "ready ones; if none, IsServing() && IsTerminating() ones; localEndpoints likewise)",
            "When no endpoint in the traffic policy's scope is ready (the node's own under "
            "Local, all of them under Cluster), forward to the terminating-but-serving ones "
            "instead of dropping.",
        ),
        # ------------------------------------------------------ scheduling & pods
        Param(
            "kube_scheduler.scheduling_latency",
            "duration",
            LogNormal(0.05, 0.5),
            "[assumption] any version",
            "[assumption] bounded by the sig-scalability pod startup SLO (p99 <= 5 s from "
            "creation to started, kubernetes/community sig-scalability/slos/slos.md)",
            "Time from pod creation to binding.",
        ),
        Param(
            "pod.image_pull_time",
            "duration",
            Fixed(0.0),
            "any version",
            "IfNotPresent with a cached image pulls nothing (k8s docs images.md); "
            "set a distribution for uncached images",
            "Image pull time of a replacement pod.",
        ),
        Param(
            "pod.container_start_time",
            "duration",
            LogNormal(1.0, 3.0),
            "[assumption] any version",
            "[assumption] within the sig-scalability pod startup SLO: p99 <= 5 s excluding "
            "image pull (sig-scalability/slos/pod_startup_latency.md)",
            "The app's start-up: from its container's process start "
            "(kubelet.container_runtime_start after the kubelet's decision) until it accepts "
            "connections; for a new pod it includes the sandbox (scheduling and the image "
            "pull excluded).",
        ),
        Param(
            "pod.readiness_probe",
            "flag",
            True,
            "any version",
            "chaoslab choice: the article's charts define readiness probes; without one a pod "
            "is Ready when its containers start (pod-lifecycle.md)",
            "Whether the app container has a readiness probe.",
        ),
        Param(
            "probe.period_seconds",
            "duration",
            Fixed(10.0),
            "all versions",
            f"{KK} pkg/apis/core/v1/defaults.go (SetDefaults_Probe)",
            "Readiness probe period.",
        ),
        Param(
            "probe.timeout_seconds",
            "duration",
            Fixed(1.0),
            "all versions",
            f"{KK} pkg/apis/core/v1/defaults.go (SetDefaults_Probe)",
            "Readiness probe timeout.",
        ),
        Param(
            "probe.success_threshold",
            "count",
            Fixed(1.0),
            "all versions",
            f"{KK} pkg/apis/core/v1/defaults.go (SetDefaults_Probe)",
            "Consecutive successes to become Ready.",
        ),
        Param(
            "probe.failure_threshold",
            "count",
            Fixed(3.0),
            "all versions",
            f"{KK} pkg/apis/core/v1/defaults.go (SetDefaults_Probe)",
            "Consecutive failures to become NotReady.",
        ),
        Param(
            "probe.initial_delay_seconds",
            "duration",
            Fixed(0.0),
            "all versions",
            f"{KK} pkg/apis/core/v1/defaults.go (SetDefaults_Probe)",
            "Delay after container start before the first readiness probe.",
        ),
        Param(
            "pod.termination_grace_period_seconds",
            "duration",
            Fixed(30.0),
            "all versions",
            f"{KK} pkg/apis/core/v1/defaults.go (SetDefaults_PodSpec); docs pod-lifecycle.md",
            "Time between the start of a graceful delete and SIGKILL.",
        ),
        Param(
            "pod.prestop_sleep",
            "duration",
            Fixed(0.0),
            "no preStop hook unless the chart defines one",
            "docs pod-lifecycle.md (Pod termination flow); a preStop sleep is the usual "
            "mitigation of the endpoint-removal race",
            "preStop hook duration before SIGTERM.",
        ),
        Param(
            "app.stop_accepting_after_sigterm",
            "duration",
            Fixed(0.0),
            "[assumption] any version",
            "[assumption] most servers close their listener on SIGTERM at once (Go "
            "http.Server.Shutdown, nginx -s quit); set it for apps that keep serving",
            "How long the app keeps accepting new connections after SIGTERM.",
        ),
        Param(
            "app.exit_after_sigterm",
            "duration",
            Fixed(1.0),
            "[assumption] any version",
            "[assumption] draining in-flight requests; capped by the termination grace period",
            "Time from SIGTERM until the app process exits (the pod object then goes away).",
        ),
        Param(
            "client.timeout",
            "duration",
            Fixed(10.0),
            "chaoslab convention",
            "chaoslab choice: a common HTTP client deadline; set it to your clients' timeout",
            "A request counts as a success only if answered within this time.",
        ),
        # ------------------------------------ stale conntrack entries (mechanisms/conntrack.py)
        Param(
            "client.connection_rate_per_ip",
            "rate",
            Fixed(0.0),
            "[assumption] any version",
            "[assumption] 0 = many client addresses, each opening few connections, so a "
            "stale entry's port is almost never reused in time (effect negligible); set it "
            "when few addresses open many connections: a NAT gateway, an LB or ingress that "
            "connects from its own address, one heavy client; the drill's prober is one "
            "address at probe.rate x probe.probers",
            "New TCP connections per second from one client source address to one node "
            "address and port (or ClusterIP); their SYNs that timed out towards a dead pod "
            "leave conntrack entries later connections can collide with.",
        ),
        Param(
            "conntrack.tcp_timeout_syn_sent",
            "duration",
            Fixed(120.0),
            "Linux 2.6.15 (nf_conntrack) to 6.x and later",
            "torvalds/linux net/netfilter/nf_conntrack_proto_tcp.c tcp_timeouts "
            "([TCP_CONNTRACK_SYN_SENT] = 2 MINS); sysctl "
            "net.netfilter.nf_conntrack_tcp_timeout_syn_sent (Documentation/networking/"
            "nf_conntrack-sysctl.rst); kube-proxy's KubeProxyConntrackConfiguration "
            "(maxPerCore, min, tcpEstablishedTimeout, tcpCloseWaitTimeout, tcpBeLiberal, "
            "udp timeouts) leaves it alone; 120 in every namespace of this lab",
            "Lifetime of a conntrack entry in SYN_SENT after its last SYN (each retransmitted "
            "SYN refreshes it).",
        ),
        Param(
            "conntrack.count_step",
            "duration",
            Fixed(0.5),
            "chaoslab convention",
            "chaoslab choice: the model's resolution, not a kernel timer; a(t) steps at this "
            "pace while stale entries live (the count at each step's middle: its mean for a "
            "count that grows or decays linearly)",
            "How often the model re-reads the expected count of stale conntrack entries.",
            positive=True,
        ),
        Param(
            "client.ip_local_port_range_low",
            "count",
            Fixed(32768.0),
            "Linux 2.6.x to 6.x and later",
            "torvalds/linux Documentation/networking/ip-sysctl.rst (ip_local_port_range: "
            "default 32768 60999); net/ipv4/af_inet.c inet_init_net",
            "First ephemeral source port of the client (net.ipv4.ip_local_port_range).",
        ),
        Param(
            "client.ip_local_port_range_high",
            "count",
            Fixed(60999.0),
            "Linux 4.x to 6.x and later (61000 before 2015)",
            "torvalds/linux Documentation/networking/ip-sysctl.rst (ip_local_port_range: "
            "default 32768 60999)",
            "Last ephemeral source port of the client (net.ipv4.ip_local_port_range).",
        ),
        Param(
            "client.connect_port_parity",
            "flag",
            True,
            "Linux 4.6 and later",
            'torvalds/linux net/ipv4/inet_hashtables.c __inet_hash_connect ("In first pass '
            'we try ports of @low parity. inet_csk_get_port() does the opposite choice."; '
            "commit 1580ab63fc9a, Linux 4.6; from Linux 6.8, commit 207184853dbd, not for a "
            "socket with IP_LOCAL_PORT_RANGE set)",
            "connect() takes source ports of the range's low parity first: a client that "
            "never exhausts them uses half of the range (false: the whole range, e.g. "
            "sockets with IP_LOCAL_PORT_RANGE on Linux 6.8+).",
        ),
        Param(
            "client.connect_port_selection",
            "choice",
            "walk",
            "walk: Linux 4.6 and later (one host-wide offset before 5.12, one per "
            "destination since; random increments since 5.18 and the 2022 stable "
            "backports)",
            "torvalds/linux net/ipv4/inet_hashtables.c __inet_hash_connect (port = low + "
            "(table_perturb[index] + hash(saddr, daddr, dport)) % remaining; after each "
            "connect table_perturb[index] += max(i, get_random_u32_below(8) * step) + step); "
            "commits 'tcp: change source port randomizarion at connect() time' (5.12) and "
            "'tcp: add small random increments to the source port' (5.18; stable 4.9.320, "
            "4.14.285, 5.10.125)",
            "How a client's successive connects to one destination pick source ports: "
            "'walk' (the kernel's: the next port a few ports on, so a port comes back once per "
            "pass of the range) or 'random' (uniform: the walk's mean over many passes).",
            choices=("walk", "random"),
        ),
        Param(
            "client.connect_port_increment",
            "count",
            Fixed(9.0),
            "Linux 5.18 and later and the 2022 stable backports (2 before: one port "
            "of the same parity on)",
            "torvalds/linux net/ipv4/inet_hashtables.c __inet_hash_connect (a free port: "
            "i = 0, advance max(0, 2 x U{0..7}) + 2 = 2..16, mean 9); measured on Linux "
            "6.18 here: 3,000 connects to one loopback address, mean 8.93, every step "
            "2-16 seen ~370 times",
            "Mean advance of the source port between two connects to the same destination, "
            "in ports (a pass of the range takes range / advance connections).",
        ),
        Param(
            "client.connect_port_shuffle_period",
            "duration",
            Fixed(10.0),
            "Linux 5.18 and later and the May 2022 stable releases (before: never, one walk "
            "per destination for the host's uptime)",
            "torvalds/linux net/core/secure_seq.c secure_ipv4_port_ephemeral "
            "(EPHEMERAL_PORT_SHUFFLE_PERIOD (10 * HZ): the hash is salted with jiffies / "
            "period); commit 4dfa9b438ee3 'tcp: resalt the secret every 10 seconds'",
            "How often the offset a client's source-port walk to one destination starts from "
            "is drawn anew (inf: never); periods start on a host-wide grid.",
            positive=True,
        ),
        Param(
            "client.tcp_syn_retries",
            "count",
            Fixed(6.0),
            "Linux 3.7 and later (5 before)",
            "torvalds/linux include/net/tcp.h (TCP_SYN_RETRIES 6); Documentation/networking/"
            "ip-sysctl.rst tcp_syn_retries",
            "SYN retransmissions before the kernel gives up on a connect (net.ipv4."
            "tcp_syn_retries).",
        ),
        Param(
            "client.tcp_timeout_init",
            "duration",
            Fixed(1.0),
            "Linux 3.1 and later (3 s before)",
            'torvalds/linux include/net/tcp.h (TCP_TIMEOUT_INIT 1*HZ, "RFC6298 2.1 initial '
            'RTO value"); RFC 6298 section 2.1',
            "Initial retransmission timeout of a SYN; each retransmission doubles it (after "
            "client.tcp_syn_linear_timeouts linear ones).",
            positive=True,
        ),
        Param(
            "client.tcp_syn_linear_timeouts",
            "count",
            Fixed(0.0),
            "Linux before 6.5 (RHEL 9's 5.14, Ubuntu 22.04's 5.15, Debian 12's 6.1); 6.5 and "
            "later default to 4: set it for such clients",
            "torvalds/linux commit ccce324dabfe 'tcp: make the first N SYN RTO backoffs "
            "linear' (net/ipv4/tcp_timer.c, v6.5); Documentation/networking/ip-sysctl.rst "
            "tcp_syn_linear_timeouts; a connect() into dropped SYNs on Linux 6.18 (value 4) "
            "sent them at +1.04, 2.06, 3.08, 4.10, 5.13, 7.15, 11.37 s",
            "SYN retransmissions that wait one initial timeout each before the doubling "
            "starts (net.ipv4.tcp_syn_linear_timeouts).",
        ),
        Param(
            "cluster.force_delete_after",
            "duration",
            Fixed(float("inf")),
            "operator action",
            "k8s docs force-delete-stateful-set-pod.md and node-shutdown.md: pods on an "
            "unreachable node stay Terminating until an operator force-deletes them or adds "
            "the out-of-service taint; default: nobody does",
            "Time after the fault at which an operator force-deletes pods stuck on a lost node.",
        ),
    ]
)

require_positive(
    "kubelet.node_status_update_frequency",
    "kubelet.node_lease_duration_seconds",
    "kubelet.node_lease_renew_interval_fraction",
    "kubelet.pleg_relist_period",
    "kube_controller_manager.node_monitor_period",
    "kube_controller_manager.node_eviction_period",
    "probe.period_seconds",
    "kube_controller_manager.leader_elect_lease_duration",
    "kube_controller_manager.leader_elect_retry_period",
    "kube_controller_manager.endpointslice_sync_backoff",
    "kube_controller_manager.endpointslice_max_sync_backoff",
)

_1_10 = (
    f"{KK} pkg/controller/nodelifecycle/config/v1alpha1/defaults.go before PR #126287 "
    "(40 s in every release up to 1.31)"
)
_PRE_134 = (
    f"{GH}/v1.33.13/{NLC} monitorNodeHealth, line 737 (processTaintBaseEviction with "
    f"&observedReadyCondition; the same at {GH}/v1.31.14/{NLC} line 748, "
    f"{GH}/v1.32.13/{NLC} line 750, and {GH}/v1.10.13/pkg/controller/nodelifecycle/"
    "node_lifecycle_controller.go monitorNodeStatus, line 631)"
)
_BURST = (
    f"{GH}/v1.33.13/pkg/proxy/iptables/proxier.go NewProxier, lines 310-315 (burstSyncs := 2; "
    f"the same at v1.31.14 and v1.32.13, line 328, and {GH}/v1.10.13/pkg/proxy/iptables/"
    "proxier.go NewProxier, lines 345-347)"
)
_OLD_SLICES = (
    f"{GH}/v1.34.4/pkg/controller/endpointslice/endpointslice_controller.go updatePod "
    "(serviceQueue.AddAfter at once, line 549; the same in every release before 1.35)"
)
#: what every release up to 1.35 does differently from the newest
_PRE_1_36 = {
    "kubelet.pleg_on_demand_relist": (
        False,
        f"{GH}/v1.37.2/pkg/features/kube_features.go lines 1930-1933 (PLEGOnDemandRelist: "
        "beta from 1.36, nothing before)",
    ),
}
#: what every release up to 1.33 does differently from the newest
_PRE_1_34 = {
    **_PRE_1_36,
    "kube_controller_manager.taint_pass": ("next-pass", _PRE_134),
    "kube_proxy.sync_runner": ("burst-2", _BURST),
    "kube_controller_manager.endpointslice_pod_queue": (False, _OLD_SLICES),
}
_SAME_AS = (
    "Every timer default is the same as 1.32 (grace 50 s, monitor 5 s, eviction 0.1/s, "
    "lease 40 s x 0.25, toleration 300 s, kube-proxy min sync 1 s, batch period 0)."
)

register_profile(
    "k8s-1.37",
    "k8s",
    "Kubernetes 1.37: taint in the Unknown pass, kube-proxy min sync from the previous "
    "sync's completion (no burst), pod changes reach the EndpointSlice Service queue through "
    "a pod queue. NodeControllerLeaseCircuitBreaker (beta, on) adds a live Lease GET at "
    "grace expiry: no effect while the controller's lease cache is current (not modelled). "
    + _SAME_AS,
    {},
    default=True,
    covers="1.37 (source read at v1.37.2, the newest 1.37 patch on the Go module proxy)",
)
register_profile(
    "k8s-1.36",
    "k8s",
    "Kubernetes 1.36: as 1.37 in every modelled timer and mechanism (no lease circuit "
    "breaker; kube-proxy's large-cluster full-sync skip above 1000 endpoints not modelled).",
    {},
    covers="1.36 (source read at v1.36.3)",
)
register_profile(
    "k8s-1.35",
    "k8s",
    "Kubernetes 1.35: as 1.36 (the EndpointSlice controller's asynchronous pod-to-Service "
    "lookup is new in 1.35); no on-demand PLEG relist.",
    _PRE_1_36,
    covers="1.35 (source read at v1.35.4)",
)
register_profile(
    "k8s-1.34",
    "k8s",
    "Kubernetes 1.34: the NoExecute taint is queued in the pass that writes Ready=Unknown "
    "(PR #120816), kube-proxy's new sync runner (min sync from the previous completion, no "
    "burst), SeparateTaintEvictionController GA; pod changes still go straight to the "
    "Service queue. " + _SAME_AS,
    {"kube_controller_manager.endpointslice_pod_queue": (False, _OLD_SLICES), **_PRE_1_36},
    covers="1.34 (source read at v1.34.0 and v1.34.4, identical in what is modelled)",
)
register_profile(
    "k8s-1.33",
    "k8s",
    "Kubernetes 1.33: as 1.32 (the taint one monitor pass after Ready=Unknown, kube-proxy "
    "token bucket with burst 2; the 1.34 fix was not backported). " + _SAME_AS,
    _PRE_1_34,
    covers="1.33 (source read at v1.33.13, the newest 1.33 patch on the Go module proxy)",
)
register_profile(
    "k8s-1.32",
    "k8s",
    "Kubernetes 1.32: Lease heartbeats, grace 50 s, the NoExecute taint one monitor pass "
    "after Ready=Unknown, taint-based eviction after 300 s, kube-proxy min sync 1 s with a "
    "burst of 2, terminating endpoints.",
    _PRE_1_34,
    covers="1.32 (source read at v1.32.13)",
)
register_profile(
    "k8s-1.31",
    "k8s",
    "Kubernetes 1.26-1.31: as 1.32 but node-monitor-grace-period 40 s.",
    {
        **_PRE_1_34,
        "kube_controller_manager.node_monitor_grace_period": (
            "40s",
            f"{KK} pkg/controller/nodelifecycle/config/v1alpha1/defaults.go before PR #126287",
        ),
    },
    covers="1.26-1.31 (source read at v1.31.14); 1.19-1.25 too with "
    "kube_proxy.proxy_terminating_endpoints=false (KEP-1669 beta only from 1.26)",
)
register_profile(
    "k8s-1.10",
    "k8s",
    "Kubernetes 1.10 (the article's era): NodeStatus heartbeats, legacy eviction counted "
    "from the last heartbeat, kube-proxy min sync 0, no terminating endpoints.",
    {
        **_PRE_1_34,
        "kubelet.node_lease": (False, "KEP-589: NodeLease alpha only in 1.13"),
        "kube_controller_manager.node_monitor_grace_period": ("40s", _1_10),
        "kube_controller_manager.taint_based_evictions": (
            False,
            "TaintBasedEvictions alpha (off) 1.6-1.12 (k8s docs feature-gates-removed)",
        ),
        "kube_proxy.iptables_min_sync_period": ("0s", f"{KK} PR #92836 (0 before 1.19)"),
        "kube_proxy.proxy_terminating_endpoints": (False, "KEP-1669: alpha from 1.22"),
    },
    covers="1.10-1.12 (TaintBasedEvictions is on from 1.13, NodeLease from 1.14; node "
    "lifecycle and kube-proxy read at v1.10.13)",
)
