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
from chaoslab.params.dists import Fixed

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
    "unhealthy 2, healthy 5, fails open when every target is unhealthy.",
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
    },
    covers="AWS NLB target groups, TCP health checks (ELBv2 API defaults as documented)",
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
    },
    covers="Google Cloud health checks (gcloud compute health-checks create defaults)",
)
