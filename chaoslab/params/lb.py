"""External load-balancer health-check knobs and the LB profiles.

Each value's source names the vendor manual or API reference it was read from.
"""

from __future__ import annotations

from chaoslab.params.catalogue import (
    Param,
    register,
    register_derived,
    register_profile,
    require_positive,
)
from chaoslab.params.dists import Fixed, Uniform

HAPROXY_DOC = "HAProxy configuration manual (server options inter/fall/rise; 'timeout check')"
TIMEOUT_CHECK = (
    "HAProxy Configuration Manual (doc/configuration.txt), section 4.2, 'timeout check': "
    '\'If "timeout check" is not set haproxy uses "inter" for complete check timeout '
    "(connect + read)'; if it is set, a check's connect timeout is min(\"timeout connect\", "
    '"inter") and "timeout check" is added as a read timeout'
)
NLB_DOC = (
    "AWS ELBv2 CreateTargetGroup API (HealthCheckIntervalSeconds, HealthCheckTimeoutSeconds, "
    "UnhealthyThresholdCount, HealthyThresholdCount); NLB target-group-health-checks doc"
)
GCP_DOC = "cloud.google.com gcloud compute health-checks create (--check-interval, --timeout, "
NLB_HC_PAGE = (
    "AWS ELB docs, 'Health checks for Network Load Balancer target groups' "
    "(docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html)"
)
NLB_TG_PAGE = (
    "AWS ELB docs, Network Load Balancer target groups, 'Deregistration delay' "
    "(deregistration_delay.timeout_seconds)"
)
#: measured from outside AWS: AWS publishes no propagation figure
NLB_470 = (
    "aws/containers-roadmap issue #470 (comment of 2023-08-31, measured with raw TCP "
    "connections): 'about 30-40 seconds for new connections to stop being sent to the target "
    "after it gets marked as Unhealthy'; 'about two minutes ... the effective minimum delay "
    "seems to be 120 seconds' after DeregisterTargets"
)
NLB_DEREG_REPORTS = (
    f"{NLB_470}; kubernetes-sigs/aws-load-balancer-controller #2366 ('deregistration takes "
    "at least 2 minutes regardless of the deregistration delay setting; ... the pod may still "
    "receive new requests/connections') and #3270 (deregistration delay 5 s, requests to the "
    "terminating pod for about 2 minutes)"
)
NLB_REG_REPORTS = (
    f"{NLB_HC_PAGE}: 'It can take a few minutes for the registration process to complete and "
    "health checks to start'; aws/containers-roadmap #469: targets 'sit idle ... in state "
    "initial for 70-120 seconds before the first health check'; awsdocs "
    "elb-network-load-balancers-user-guide PR #11: 'around 120 seconds'"
)
NLB_RST = (
    "AWS ELB docs, 'Health checks for Network Load Balancer target groups' "
    "(docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html): "
    "'If a target becomes unhealthy, the load balancer sends a TCP RST for packets received on "
    "the client connections associated with the target, unless the unhealthy target triggers "
    "the load balancer to fail open'; 'Edit target group attributes', 'Connection termination "
    "for unhealthy targets': target_health_state.unhealthy.connection_termination.enabled, "
    "default true (unhealthy.draining_interval_seconds 0)"
)
NLB_DEREG_TERM = (
    "AWS ELBv2 API Reference, TargetGroupAttribute: "
    "deregistration_delay.connection_termination.enabled 'Indicates whether the load balancer "
    "terminates connections at the end of the deregistration timeout ... The default is false'"
)
GCP_PERSIST = (
    "Google Compute Engine API, BackendServiceConnectionTrackingPolicy."
    "connectionPersistenceOnUnhealthyBackends: default DEFAULT_FOR_PROTOCOL, 'the existing "
    "connections persist on unhealthy backends only for connection-oriented protocols (TCP and "
    "SCTP)' with the default PER_CONNECTION tracking"
)
AWS_LBC = (
    "kubernetes-sigs/aws-load-balancer-controller docs (deploy/pod_readiness_gate.md; "
    "guide/service/nlb.md target-type ip): the controller registers and deregisters pod IPs "
    "from the Service's endpoints through the TargetGroupBinding reconciler"
)
GKE_NEG = (
    "Google Cloud docs, GKE 'Container-native load balancing through standalone zonal NEGs' "
    "(cloud.google.com/kubernetes-engine/docs/how-to/standalone-neg): pod-IP endpoints are "
    "GCE_VM_IP_PORT NEGs, added as backends to the backend services of load balancers (GKE "
    "Ingress: an Application Load Balancer); 'Network endpoint groups overview' "
    "(cloud.google.com/load-balancing/docs/negs): a passthrough Network Load Balancer takes "
    "GCE_VM_IP NEGs, the nodes' primary IPs, not pod IPs"
)
GCP_DRAIN_PAGE = (
    "Google Cloud docs, 'Enable connection draining' "
    "(cloud.google.com/load-balancing/docs/enabling-connection-draining): a timeout of 0 to "
    "3600 s on the backend service; 'The load balancer does not send new TCP connections to "
    "the removed VM'"
)

register(
    [
        Param(
            "lb.interval",
            "duration",
            Fixed(2.0),
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: inter 'If not specified, the default value is 2s'",
            "Time between two health checks of one target.",
        ),
        Param(
            "lb.timeout",
            "duration",
            Fixed(2.0),
            "HAProxy 1.3.15-3.x",
            TIMEOUT_CHECK,
            "A check that gets no answer within this time fails (a dead node never answers). "
            "Follows lb.interval unless set (HAProxy without 'timeout check'); for a dead node "
            "with 'timeout check' set, use min(timeout connect, inter).",
        ),
        Param(
            "lb.fall",
            "count",
            Fixed(3.0),
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: fall 'By default, this is set to 3'",
            "Consecutive failed checks that mark a target down.",
        ),
        Param(
            "lb.rise",
            "count",
            Fixed(2.0),
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: rise 'The default is 2'",
            "Consecutive passed checks that mark a target up again.",
        ),
        Param(
            "lb.check_schedule",
            "choice",
            "after-completion",
            "HAProxy 1.x-3.x",
            "haproxy/haproxy src/check.c (process_chk_conn: once a check is complete or "
            "aborted, the task expires 'inter' later); confirmed in the chaoslab lab (docs/lab.md)",
            "When the next health check starts: a fixed grid ('fixed-rate') or 'interval' after "
            "the previous check completed ('after-completion': a timed-out check delays the next).",
            choices=("after-completion", "fixed-rate"),
        ),
        Param(
            "lb.fail_open",
            "flag",
            False,
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: with every server down a backend answers 503",
            "When every target is marked down, keep sending to all of them (AWS NLB) instead "
            "of failing every request (HAProxy 503).",
        ),
        Param(
            "lb.propagation",
            "duration",
            Fixed(0.0),
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: the process that runs the checks balances the traffic, so a "
            "server marked DOWN gets no new connection from that instant",
            "From the instant the LB marks a target down (or up) until its data plane stops (or "
            "starts) sending it new connections. Cloud LBs distribute health state to a fleet "
            "of LB nodes; a target marked unhealthy keeps getting new connections meanwhile.",
        ),
        Param(
            "lb.deregistration_propagation",
            "duration",
            Fixed(0.0),
            "HAProxy 1.x-3.x",
            "chaoslab convention: a server taken out of an HAProxy backend (runtime API "
            "'disable server', or a reload) gets no new connection from that instant",
            "From a target's deregistration (graceful removal: a node leaves the target group, "
            "an IP target's pod is deleted) until the LB stops sending it new connections.",
        ),
        Param(
            "lb.deregistration_delay",
            "duration",
            Fixed(0.0),
            "HAProxy 1.x-3.x",
            "chaoslab convention: HAProxy has no deregistration state; connections of a "
            "removed server end with the server",
            "How long the LB keeps a deregistered target's established connections (draining) "
            "before it ends them; no new connections reach it meanwhile.",
        ),
        Param(
            "lb.registration_time",
            "duration",
            Fixed(0.0),
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: a server in the configuration is checked from the start",
            "From registering a new target (a node joins the target group, an IP target's "
            "new pod) until its first health check; it gets traffic once that check passes.",
        ),
        Param(
            "lb.unhealthy_connection_termination",
            "flag",
            False,
            "HAProxy 1.x-3.x",
            f"{HAPROXY_DOC}: 'on-marked-down shutdown-sessions' is not set by default, so "
            "established sessions of a server marked DOWN are kept",
            "The LB resets the established connections of a target it routes out as unhealthy "
            "(not while it fails open). AWS NLB: yes by default; GCP and HAProxy keep them.",
        ),
        Param(
            "lb.deregistration_connection_termination",
            "flag",
            False,
            "AWS NLB (default false); HAProxy has no deregistration",
            NLB_DEREG_TERM,
            "At the end of a deregistered target's drain the LB resets its remaining "
            "connections; false: they run on until the target closes them.",
        ),
        Param(
            "lb.pod_ip_targets",
            "flag",
            True,
            "HAProxy 1.x-3.x, AWS NLB (aws-load-balancer-controller v2.x)",
            f"{AWS_LBC}; HAProxy takes any routable address as a server",
            "The L4 LB can send connections straight to pod IPs (cloud-lb-ip); false: pod-IP "
            "backends exist only behind a proxy LB (GCP), which cloud-lb-ip does not model "
            "and refuses.",
        ),
        Param(
            "cloud_lb.controller_sync",
            "duration",
            Uniform(0.2, 2.0),
            "[assumption] aws-load-balancer-controller v2.x, GKE NEG controller",
            f"[assumption] {AWS_LBC}; no figure is published for the time from an "
            "EndpointSlice change to the RegisterTargets / DeregisterTargets call (a watch "
            "event, a reconcile and one ELBv2 API call)",
            "cloud-lb-ip: from an endpoint change (pod ready, deleted, not ready) to the "
            "controller's registration or deregistration of the pod IP.",
        ),
        Param(
            "lb.targets",
            "choice",
            "workers",
            "chaoslab convention",
            "the article's TACO setup registers the worker (non-master) nodes behind the LB; "
            "set 'all' to include the masters",
            "Which nodes the LB sends NodePort traffic to.",
            choices=("workers", "all", "app-nodes"),
        ),
    ]
)

require_positive("lb.interval")
register_derived("lb.timeout", "lb.interval", "= lb.interval (no 'timeout check')", TIMEOUT_CHECK)

register_profile(
    "haproxy",
    "lb",
    "HAProxy defaults: inter 2 s, fall 3, rise 2, check timeout = inter, 503 when all down.",
    {},
    default=True,
    covers="HAProxy 1.3.15-3.x (configuration manual; check scheduling read in src/check.c)",
)
register_profile(
    "aws-nlb",
    "lb",
    "AWS Network Load Balancer target group, TCP health checks: 30 s interval, 10 s timeout, "
    "unhealthy 2, healthy 5, fails open when every target is unhealthy; new connections "
    "for 30-40 s after a mark, ~2 min after a deregistration, 300 s draining; resets the "
    "connections of a target it routes out as unhealthy.",
    {
        "lb.interval": ("30s", f"{NLB_DOC}: HealthCheckIntervalSeconds 30"),
        "lb.timeout": ("10s", f"{NLB_DOC}: HealthCheckTimeoutSeconds 10 for TCP"),
        "lb.fall": (2, f"{NLB_DOC}: UnhealthyThresholdCount 2"),
        "lb.rise": (5, f"{NLB_DOC}: HealthyThresholdCount 5"),
        "lb.fail_open": (True, f"{NLB_DOC}: 'unless the unhealthy target triggers ... fail open'"),
        "lb.check_schedule": (
            "fixed-rate",
            "[assumption] AWS documents an interval between health checks per target, run by a "
            "fleet of checkers; no completion-based rescheduling is documented",
        ),
        "lb.propagation": (
            "uniform(30s, 40s)",
            f"{NLB_470} (measured; AWS publishes no figure; the uniform shape is an [assumption])",
        ),
        "lb.deregistration_propagation": (
            "uniform(120s, 140s)",
            f"{NLB_DEREG_REPORTS} (measured ~120 s in three reports; the 20 s spread is an "
            "[assumption])",
        ),
        "lb.deregistration_delay": (
            "300s",
            f"{NLB_TG_PAGE}: 'The default value is 300 seconds'; a target with no active "
            "connection completes at once",
        ),
        "lb.registration_time": (
            "uniform(70s, 120s)",
            f"{NLB_REG_REPORTS} (measured; the uniform shape is an [assumption])",
        ),
        "lb.unhealthy_connection_termination": (True, NLB_RST),
        "lb.deregistration_connection_termination": (False, NLB_DEREG_TERM),
    },
    covers="AWS NLB target groups, TCP health checks (ELBv2 API defaults as documented); "
    "propagation and registration delays as measured in 2019-2023 reports",
)
register_profile(
    "gcp",
    "lb",
    "Google Cloud health checks (gcloud defaults): 5 s interval, 5 s timeout, 2 / 2.",
    {
        "lb.interval": ("5s", f"{GCP_DOC}--check-interval default 5s"),
        "lb.timeout": ("5s", f"{GCP_DOC}--timeout default 5s"),
        "lb.fall": (2, f"{GCP_DOC}--unhealthy-threshold default 2"),
        "lb.rise": (2, f"{GCP_DOC}--healthy-threshold default 2"),
        "lb.check_schedule": (
            "fixed-rate",
            "[assumption] Google documents --check-interval as the time from the start of one "
            "probe to the start of the next",
        ),
        "lb.propagation": (
            "uniform(0s, 5s)",
            "[assumption] Google publishes no figure and no measurement was found; health "
            "state is computed centrally (health-check-concepts: 'an overall health state is "
            "computed for each backend') and taken to reach the data plane within one default "
            "check interval",
        ),
        "lb.deregistration_propagation": (
            "uniform(0s, 5s)",
            f"{GCP_DRAIN_PAGE}; [assumption] the removal reaches the data plane like a health "
            "change (no figure published)",
        ),
        "lb.deregistration_delay": (
            "0s",
            f"{GCP_DRAIN_PAGE}; a timeout of 0 disables draining. [assumption] 0 for a backend "
            "service nobody set it on (the default was not confirmed)",
        ),
        "lb.registration_time": (
            "0s",
            "[assumption] Google documents no delay before a new backend's first probe",
        ),
        "lb.unhealthy_connection_termination": (
            False,
            f"{GCP_PERSIST}; a passthrough Network LB setting: node targets (cloud-lb) only",
        ),
        "lb.pod_ip_targets": (
            False,
            f"{GKE_NEG}: pinned L4 connections to pod IPs do not exist on GCP",
        ),
    },
    covers="Google Cloud health checks (gcloud compute health-checks create defaults), a "
    "passthrough Network LB with instance-group (node) backends",
)
