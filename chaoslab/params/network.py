"""Network knobs: VIP/ARP, VRRP (keepalived), BGP, BFD, ECMP, ingress-nginx, clients,
MetalLB (memberlist), kube-vip, cloud LB; and their profiles.

Each value's source names the upstream file, RFC section or docs page it was read from
(``chaoslab params`` prints them; ``docs/model-network.md`` explains the mechanisms). Values
marked ``[assumption]`` have no published default; the source says what bounds them.

Profile families (pick at most one per family in an experiment):

- ``vrrp``: ``keepalived`` (default: keepalived's own defaults), ``keepalived-osh``
  (the article's chart in keepalived mode);
- ``bgp``: ``bird2`` (default), ``calico-bird``, ``frr-traditional``, ``frr-datacenter``,
  ``gobgp``, ``metallb-native``, ``metallb-frr`` — the BGP speaker on the nodes, with its
  BFD defaults;
- ``router``: ``router-bird2`` (default, the lab's), ``router-frr``, ``router-hardware`` —
  the router the speakers peer with (hold proposal, hold-timer jitter, flush, FIB time,
  multipath, ARP cache), picked independently of the speakers;
- ``ingress-nginx``: ``ingress-nginx`` (default, dynamic Lua balancer),
  ``ingress-nginx-2018`` (0.15: reload on endpoint change, unlimited tries);
- ``kube-vip``: ``kube-vip-1.1`` (default), ``kube-vip-1.0``.
"""

from __future__ import annotations

from collections.abc import Sequence

from chaoslab.params.catalogue import Param, register, register_profile, require_positive
from chaoslab.params.dists import Empirical, Fixed, LogNormal, Uniform
from chaoslab.params.paramset import Sampler

__all__ = ["per_node"]

KA_MAN = "acassen/keepalived doc/man/man5/keepalived.conf.5.in"
KA_H = "acassen/keepalived keepalived/include/vrrp.h"
BIRD = "CZ-NIC/bird v2.19.2 doc/bird.sgml"
FRR = "FRRouting/frr bgpd/bgpd.h and doc/user/basic.rst (frr defaults traditional)"
FRR_DC = "FRRouting/frr bgpd/bgp_vty.h FRR_CFG_DEFAULT_ULONG (frr defaults datacenter)"
CALICO = "projectcalico/calico node/filesystem/etc/calico/confd/templates/bird.cfg.template"
GOBGP = "osrg/gobgp pkg/config/oc/default.go"
ML = "metallb/metallb"
ML_LIST = "hashicorp/memberlist config.go DefaultLANConfig (used by metallb speakerlist.go)"
KVIP = "kube-vip/kube-vip cmd/kube-vip.go flag defaults"
ING = "kubernetes/ingress-nginx"
ARP7 = "man-pages man7/arp.7; kernel Documentation/networking/ip-sysctl.rst"
OSH = "openstack/openstack-helm ingress chart at 67fae419b^ (ingress/values.yaml, templates/bin)"
OSIXIA = "osixia/docker-keepalived v1.4.5 image/service/keepalived/assets/keepalived.conf"
_CONV = "chaoslab convention"


def per_node(p: Sampler, key: str, n: int) -> list[float]:
    """One value per node: a list in YAML (``[150, 100]``) gives the nodes' values in
    order (cycled), a single value or distribution is drawn once and shared by all."""
    dist = p.dist(key)
    if isinstance(dist, Empirical) and n > 0:
        vals: Sequence[float] = dist.values
        return [vals[i % len(vals)] for i in range(n)]
    v = p.draw(key)
    return [v] * n


register(
    [
        # ------------------------------------------------------------ ARP / VIP
        Param(
            "arp.neighbor",
            "choice",
            "linux",
            _CONV,
            f"{_CONV}: a Linux host or gateway on the VIP's segment ({ARP7}: Linux 2.2+ uses "
            "the RFC 2461 NUD algorithm); 'router' is a router/switch ARP cache with a fixed "
            "timeout (Cisco IOS 4 h)",
            "Who resolves the VIP to a MAC for the clients: a Linux neighbour cache or a router.",
            choices=("linux", "router"),
        ),
        Param(
            "arp.base_reachable_time",
            "duration",
            Fixed(30.0),
            "Linux 2.2+",
            f"{ARP7}: base_reachable_time_ms 30000; entry valid U(base/2, 3*base/2)",
            "Linux neighbour: REACHABLE lasts U(base/2, 3 base/2) after the last confirmation.",
        ),
        Param(
            "arp.delay_first_probe_time",
            "duration",
            Fixed(5.0),
            "Linux 2.2+",
            f"{ARP7}: delay_first_probe_time 5 s",
            "Linux neighbour: DELAY state before the first unicast probe of a STALE entry.",
        ),
        Param(
            "arp.ucast_solicit",
            "count",
            Fixed(3.0),
            "Linux 2.2+",
            f"{ARP7}: ucast_solicit 3",
            "Linux neighbour: unicast probes before the entry FAILS and is re-resolved.",
        ),
        Param(
            "arp.retrans_time",
            "duration",
            Fixed(1.0),
            "Linux 2.2+",
            f"{ARP7}: retrans_time_ms 1000",
            "Linux neighbour: time between probes.",
        ),
        Param(
            "arp.router_timeout",
            "duration",
            Fixed(14400.0),
            "Cisco IOS (all)",
            "O'Reilly, Cisco IOS in a Nutshell, 'arp timeout': default 14400 s (4 h); "
            "vendor manuals: HPE Comware 'arp timer aging' 20 min, FortiSwitch 180 s",
            "Router ARP cache: an entry is refreshed only when it times out (no NUD).",
        ),
        Param(
            "arp.accept_garp",
            "flag",
            True,
            "Linux (always, for an existing entry); routers: per vendor",
            f"{ARP7}: arp_accept 'If the ARP table already contains the IP address of the "
            "gratuitous arp frame, the arp table will be updated regardless'; Juniper Junos "
            "'gratuitous-arp-reply': updating the ARP cache on gratuitous ARP replies is off "
            "by default; MetalLB issue #2009 (a router ARP cache on another subnet)",
            "A router neighbour (arp.neighbor: router) updates its entry on a gratuitous ARP; "
            "false: it keeps the old MAC until its own ARP timeout, in every VIP design.",
        ),
        Param(
            "arp.garp_loss",
            "ratio",
            Fixed(0.0),
            "[assumption] any segment",
            "[assumption] every gratuitous ARP reaches the neighbour (the model's VRRP/GARP "
            "packets are never lost); set a share to study a neighbour that misses bursts: "
            "MetalLB issue #2910 (a neighbour left with a stale entry), keepalived.conf(5) "
            "vrrp_garp_master_repeat 'number of gratuitous ARP messages to send at a time'",
            "Probability that one GARP frame does not reach the neighbour, independently per "
            "frame: a burst of r frames is missed with probability loss^r.",
        ),
        Param(
            "arp.mcast_solicit",
            "count",
            Fixed(3.0),
            "Linux 2.2+",
            f"{ARP7}: mcast_solicit 3 (broadcast probes of an unresolved entry); net/core/"
            "neighbour.c neigh_invalidate() reports the queued packets' failure "
            "(EHOSTUNREACH to a connecting socket) when they are used up",
            "Linux neighbour: broadcast probes before an unresolved entry FAILS.",
        ),
        Param(
            "cni.routing",
            "choice",
            "overlay",
            "Calico (IPIP Always by default), flannel (vxlan by default)",
            "projectcalico/calico manifests CALICO_IPV4POOL_IPIP 'Always'; flannel-io/flannel "
            "Documentation/backends.md (VXLAN recommended, host-gw for direct routing); "
            "[derived] behind an encapsulation the neighbour that fails is the outer packet's "
            "and the proxied socket sees no error",
            "How pod IPs reach another node: overlay (VXLAN, IP-in-IP: a dead node is a black "
            "hole until the connect timeout) or direct (host-gw, BGP without encapsulation: "
            "EHOSTUNREACH once the neighbour entry for that node failed).",
            choices=("overlay", "direct"),
        ),
        Param(
            "vip.garp",
            "flag",
            True,
            "openstack-helm ingress chart 2018-2024",
            f"{OSH}: ingress-vip.sh start runs 'arping -U -c 3' (only when a scope-link "
            "route to the VIP exists: set false for a /32 without one)",
            "ingress-vip-pod: the init container announces the VIP by gratuitous ARP.",
        ),
        # ------------------------------------------------------------ VRRP / keepalived
        Param(
            "vrrp.version",
            "count",
            Fixed(2.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}: vrrp_version '(default: 2, but IPv6 instances will use version 3)'",
            "VRRP version: 2 (RFC 3768, skew independent of the advert) or 3 (RFC 5798).",
        ),
        Param(
            "vrrp.advert_int",
            "duration",
            Fixed(1.0),
            "keepalived 1.x-2.x; RFC 3768/5798",
            f"{KA_H}: VRRP_ADVER_DFL 1; RFC 5798 section 6.1 (100 centiseconds)",
            "Advertisement interval of the master.",
        ),
        Param(
            "vrrp.priority",
            "count",
            Fixed(100.0),
            "keepalived 1.x-2.x",
            f"{KA_H}: VRRP_PRIO_DFL 100",
            "Priority of each keepalived instance; a list gives one per node in order.",
        ),
        Param(
            "vrrp.nopreempt",
            "flag",
            False,
            "keepalived 1.x-2.x; RFC 5798 Preempt_Mode True",
            f"{KA_MAN}: nopreempt (off by default)",
            "A higher-priority router that returns does not take the VIP back.",
        ),
        Param(
            "vrrp.preempt_delay",
            "duration",
            Fixed(0.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}: preempt_delay default 0 (range 0-1000 s)",
            "Extra wait before a returning higher-priority router preempts.",
        ),
        Param(
            "vrrp.down_timer_adverts",
            "count",
            Fixed(3.0),
            "keepalived 2.x; RFC 3768/5798 (3 x advert)",
            f"{KA_H}: VRRP_DOWN_TIMER_ADVERTS 3",
            "Master_Down_Interval = this x Master_Adver_Interval + Skew_Time.",
        ),
        Param(
            "vrrp.garp_master_repeat",
            "count",
            Fixed(5.0),
            "keepalived 1.x-2.x",
            f"{KA_H}: VRRP_GARP_REP 5; {KA_MAN} garp_master_repeat",
            "Gratuitous ARPs sent on becoming MASTER (0: none; neighbours learn by ARP).",
        ),
        Param(
            "vrrp.garp_master_delay",
            "duration",
            Fixed(5.0),
            "keepalived 1.x-2.x",
            f"{KA_H}: VRRP_GARP_DELAY 5 s; {KA_MAN} garp_master_delay",
            "Delay of the second GARP burst after becoming MASTER (0: no second burst).",
        ),
        Param(
            "vrrp.track_script",
            "flag",
            False,
            "keepalived (vrrp_script configured or not); osixia/keepalived 1.4.5 has none",
            f"{KA_MAN} section 'VRRP script(s)'; {OSIXIA} (the chart's keepalived config): "
            "no track_script",
            "keepalived runs a vrrp_script checking the local ingress (nginx) process.",
        ),
        Param(
            "vrrp.script_interval",
            "duration",
            Fixed(1.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}; vrrp_parser.c VRRP_SCRIPT_DI 1",
            "vrrp_script: time between two runs.",
        ),
        Param(
            "vrrp.script_timeout",
            "duration",
            Fixed(1.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}: timeout defaults to the interval",
            "vrrp_script: a run that takes longer counts as failed (a hung check).",
        ),
        Param(
            "vrrp.script_fall",
            "count",
            Fixed(1.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}; vrrp_data.c new->fall = 1",
            "vrrp_script: consecutive failures for the KO transition.",
        ),
        Param(
            "vrrp.script_rise",
            "count",
            Fixed(1.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}; vrrp_data.c rise 1",
            "vrrp_script: consecutive successes for the OK transition.",
        ),
        Param(
            "vrrp.script_weight",
            "count",
            Fixed(0.0),
            "keepalived 1.x-2.x",
            f"{KA_MAN}: weight default 0, range -253..253",
            "vrrp_script: 0 -> FAULT (priority-0 advert); otherwise the priority drops by this "
            "much while the script fails (give the magnitude).",
        ),
        Param(
            "vrrp.garp_master_refresh",
            "duration",
            Fixed(0.0),
            "keepalived 1.2.14-2.x (refresh since 1.2.10, its repeat since 1.2.14)",
            f"{KA_MAN}: garp_master_refresh 'minimum time interval for refreshing gratuitous "
            "ARPs while MASTER ... (default: 0 (no refreshing))'; keepalived/vrrp/vrrp.c "
            "vrrp_state_become_master() arms the first refresh garp_master_delay + refresh "
            "after the transition, vrrp_scheduler.c vrrp_gratuitous_arp_refresh_thread() "
            "re-arms it every refresh",
            "Period of the MASTER's refresh GARPs (0: none); when the first comes follows "
            "vrrp.garp_refresh_schedule.",
        ),
        Param(
            "vrrp.garp_master_refresh_repeat",
            "count",
            Fixed(1.0),
            "keepalived 1.2.14-2.x (refresh since 1.2.10, its repeat since 1.2.14)",
            f"{KA_MAN}: garp_master_refresh_repeat 'number of gratuitous ARP messages to send "
            "at a time while MASTER (default: 1)'",
            "GARP frames in each refresh.",
        ),
        Param(
            "vrrp.garp_refresh_schedule",
            "choice",
            "timer",
            "timer: keepalived 2.3.2+; advert: 1.2.10-2.3.1 (Debian 12's 2.2.7)",
            "acassen/keepalived v2.3.2 keepalived/vrrp/vrrp.c vrrp_state_become_master(): a "
            "refresh thread at garp_master_delay + refresh, re-armed every refresh (commit "
            "b1d9e375); v2.2.7 vrrp.c: garp_refresh_timer = now + refresh, the refresh sent by "
            "vrrp_state_master_tx() with the first advert after it; captured with keepalived "
            "2.2.7 in the lab (docs/lab.md)",
            "When a MASTER's refresh GARPs go out: timer (delay + k x refresh) or advert (with "
            "the first advert after each deadline: every ceil(refresh / advert) adverts).",
            choices=("timer", "advert"),
        ),
        Param(
            "vrrp.track_process",
            "flag",
            False,
            "keepalived 2.0.11+ (vrrp_track_process configured or not)",
            f"{KA_MAN} section 'VRRP track processes' (netlink process events, no polling); "
            "acassen/keepalived ChangeLog 2.0.11 'Add track_process'",
            "keepalived tracks the local ingress (nginx) process with vrrp_track_process: it "
            "reacts to the process's exit at once (plus vrrp.process_delay), not on a grid.",
        ),
        Param(
            "vrrp.process_delay",
            "duration",
            Fixed(0.0),
            "keepalived 2.0.11+",
            f"{KA_MAN}: terminate_delay / fork_delay (delay sets both), unset by default; "
            "keepalived/core/track_process.c: without terminate_delay the lost quorum is "
            "processed in the exit event",
            "vrrp_track_process: wait after the process exits (or returns) before the "
            "tracker changes state.",
        ),
        Param(
            "vrrp.process_weight",
            "count",
            Fixed(0.0),
            "keepalived 2.0.11+",
            f"{KA_MAN}: vrrp_track_process weight 'default is 0' (0: FAULT)",
            "vrrp_track_process: 0 -> FAULT (priority-0 advert); otherwise the priority drops "
            "by this much while the process is missing (give the magnitude).",
        ),
        # ------------------------------------------------------------ BGP
        Param(
            "bgp.hold_time",
            "duration",
            Fixed(240.0),
            "BIRD 1.6-2.x",
            f"{BIRD}: hold time 240 s",
            "Hold time the node's BGP speaker proposes (negotiated to the lower of both ends).",
        ),
        Param(
            "bgp.peer_hold_time",
            "duration",
            Fixed(240.0),
            "the router's BGP; BIRD 2 (router-bird2, as in the lab)",
            f"{BIRD}: hold time 240 s (the router is BIRD 2, like chaoslab's lab); "
            "the router-frr and router-hardware profiles propose 180 s, RFC 4271 section 10 "
            "suggests 90 s",
            "Hold time the router proposes; the session uses min(hold_time, peer_hold_time).",
        ),
        Param(
            "bgp.keepalive_time",
            "duration",
            Fixed(0.0),
            "BIRD 2; RFC 4271 section 10",
            f"{BIRD}: keepalive time = 1/3 of hold time; RFC 4271 section 10",
            "Keepalive interval of the speaker; 0 = one third of the negotiated hold time.",
        ),
        Param(
            "bgp.keepalive_jitter",
            "ratio",
            Fixed(0.25),
            "RFC 4271; BIRD (bgp_start_timer randomizes by up to 25 %)",
            "RFC 4271 section 10: timers jittered by a factor uniform in 0.75-1.0",
            "Each keepalive interval is shortened by up to this share.",
        ),
        Param(
            "bgp.graceful_restart",
            "flag",
            False,
            "BIRD 2 (aware only); FRR (helper only); Calico sets it on",
            f"{BIRD}: graceful restart aware; {CALICO}: 'graceful restart;'",
            "The speaker advertises graceful restart: the router keeps its routes as stale "
            "after the session drops.",
        ),
        Param(
            "bgp.long_lived_graceful_restart",
            "flag",
            False,
            "BIRD 2.0.8+ (off unless configured); not in Calico's templates",
            f"{BIRD}: proto/bgp/bgp.c bgp_hold_timeout() keeps routes as stale after a hold "
            "timer expiry only when long-lived GR is negotiated (llgr_ready); plain graceful "
            "restart is entered on a lost TCP session (bgp_sock_err), not on hold expiry",
            "Whether a hold-timer expiry (a silent node) also keeps the node's routes as stale. "
            "Without it, graceful restart only covers a speaker whose session was closed "
            "(daemon killed on a live node).",
        ),
        Param(
            "bgp.hold_timer_jitter",
            "ratio",
            Fixed(0.0),
            "RFC 4271 routers; the router-bird2 profile sets 0.25",
            "RFC 4271 section 10 jitters ConnectRetry, keepalive and MRAI timers, not the hold "
            f"timer; {BIRD}: proto/bgp/bgp.c bgp_start_timer() takes a random 0-25 % off every "
            "BGP timer it starts, the hold timer included (measured in the lab: docs/lab.md)",
            "Each (re)armed hold timer is shortened by a uniform share up to this value.",
        ),
        Param(
            "bgp.hold_expiry_flush_delay",
            "duration",
            Fixed(0.0),
            "[assumption] RFC 4271 routers; router-bird2 / router-frr set measured values",
            "[assumption] a NOTIFICATION then an immediate flush; BIRD 2 enters its CLOSE state "
            "after a hold expiry and flushes later (lab measurement, docs/lab.md)",
            "Time from a hold-timer expiry on the router to the route leaving its forwarding "
            "table (measured to the kernel route: router.fib_update_time is not added on top "
            "when this is > 0).",
        ),
        Param(
            "bgp.graceful_restart_time",
            "duration",
            Fixed(120.0),
            "BIRD 1.6-2.x, FRR",
            f"{BIRD}: graceful restart time 120 s; FRR BGP_DEFAULT_RESTART_TIME 120; "
            "RFC 4724 section 4.2",
            "Restart Time: the router deletes the stale routes if the session is not back.",
        ),
        Param(
            "bgp.connect_delay",
            "duration",
            Fixed(5.0),
            "BIRD 2",
            f"{BIRD}: connect delay time 5 s",
            "Time from the speaker starting (or its path returning) to an Established session.",
        ),
        Param(
            "bgp.error_wait_time",
            "duration",
            Fixed(60.0),
            "BIRD 2",
            f"{BIRD}: error wait time 60, 300 (the minimum applies after a first error)",
            "After a session error with both ends alive, wait this long before reconnecting.",
        ),
        Param(
            "bgp.withdraw_delay",
            "duration",
            Fixed(0.0),
            "BIRD 2 on Linux (netlink notifications)",
            f"{BIRD}: the device/direct protocols follow netlink address events at once",
            "From the VIP leaving the node's interface to the speaker sending the withdrawal.",
        ),
        Param(
            "router.fib_update_time",
            "duration",
            Uniform(0.01, 0.1),
            "[assumption] any router; router-bird2 / router-frr set lab measurements",
            "[assumption] RIB to FIB programming of one prefix; tens of ms on Linux/FRR, "
            "bounded above by a scan interval on older software routers",
            "From a route change in the router's RIB (session closed, BFD down, withdrawal) to "
            "its forwarding table (the kernel route).",
        ),
        Param(
            "router.multipath",
            "flag",
            True,
            "the ECMP designs' premise; BIRD 2 and Cisco IOS need it configured",
            f"{_CONV}: the BGP designs assume a router configured for ECMP ({BIRD} kernel "
            "protocol 'merge paths': 'By default, multipath merging is disabled'; O'Reilly, "
            "Cisco IOS in a Nutshell, 'maximum-paths': default 1 for BGP)",
            "The router installs every equal path (ECMP); false: one best path only, so a dead "
            "next hop takes all traffic until it is withdrawn.",
        ),
        Param(
            "router.best_path",
            "choice",
            "lowest-router-id",
            "RFC 4271; Cisco IOS prefers the oldest external path",
            "RFC 4271 section 9.1.2.2 (f): the route from the lowest BGP Identifier; Cisco "
            "IOS IP Configuration Guide, BGP best path: 'If multipath is not enabled, prefer "
            "the route with the lowest IP address value for the BGP router ID' after older "
            "external paths (RFC 5004 'prefer the oldest')",
            "Single-path router: which equal path is installed (lowest-router-id: the "
            "first node; oldest: the longest-established session, so a returning node does "
            "not take the traffic back).",
            choices=("lowest-router-id", "oldest"),
        ),
        # ------------------------------------------------------------ BFD
        Param(
            "bfd.enabled",
            "flag",
            False,
            "BIRD 2, FRR, GoBGP: off unless configured; Calico: no BFD",
            f"{BIRD}: bfd disabled; {CALICO}: no bfd line; FRRouting/frr doc/user/bfd.rst "
            "(only with 'neighbor X bfd')",
            "BFD runs between each node and the router and tears BGP down on loss.",
        ),
        Param(
            "bfd.interval",
            "duration",
            Fixed(0.1),
            "BIRD 2",
            f"{BIRD}: min tx interval 100 ms",
            "Desired min TX interval of each end.",
        ),
        Param(
            "bfd.min_rx",
            "duration",
            Fixed(0.01),
            "BIRD 2",
            f"{BIRD}: min rx interval 10 ms",
            "Required min RX interval of each end.",
        ),
        Param(
            "bfd.multiplier",
            "count",
            Fixed(5.0),
            "BIRD 2",
            f"{BIRD}: multiplier 5",
            "Detect multiplier; detection = remote mult x max(local rx, remote tx).",
        ),
        # ------------------------------------------------------------ ECMP
        Param(
            "ecmp.mode",
            "choice",
            "hash-threshold",
            "Linux legacy multipath; most routers",
            "kernel Documentation/networking/nexthop-group-resilient.rst (the legacy "
            "multipath group uses hash-threshold); RFC 2991 section 4, RFC 2992",
            "How the router maps flows to next hops: modulo-N, hash-threshold or resilient.",
            choices=("modulo", "hash-threshold", "resilient"),
        ),
        Param(
            "ecmp.hash_policy",
            "choice",
            "L3",
            "Linux 4.12+ (fib_multipath_hash_policy); most routers hash L3 by default",
            "kernel Documentation/networking/ip-sysctl.rst fib_multipath_hash_policy: "
            "0 - Layer 3 (default), 1 - Layer 4",
            "Fields the router hashes: L3 (source, destination address: all connections of "
            "one client take one path) or L4 (plus ports: each connection its own path).",
            choices=("L3", "L4"),
        ),
        Param(
            "client.source_addresses",
            "count",
            Fixed(0.0),
            _CONV,
            f"{_CONV}: 0 = many clients (users of a service), each a share of the traffic; "
            "the lab's prober is 1 address",
            "Distinct client addresses behind the router; with ecmp.hash_policy L3 each takes "
            "one path for all its connections (0 = so many that only the shares matter).",
        ),
        # ------------------------------------------------------------ ingress-nginx
        Param(
            "nginx.dynamic_configuration",
            "flag",
            True,
            "ingress-nginx default from 0.18.0 (2018-08), only mode from 0.21.0",
            f"{ING} Changelog.md (PR #2794, #3198)",
            "Endpoints reach nginx through the Lua balancer (true) or by reloading nginx.conf.",
        ),
        Param(
            "nginx.sync_rate_limit",
            "rate",
            Fixed(0.3),
            "ingress-nginx 2018-now",
            f"{ING} pkg/flags/flags.go --sync-rate-limit 0.3",
            "Controller syncs per second at most (one sync every 1/rate s).",
        ),
        Param(
            "nginx.backends_sync_interval",
            "duration",
            Fixed(1.0),
            "ingress-nginx 0.18+",
            f"{ING} rootfs/etc/nginx/lua/balancer.lua BACKENDS_SYNC_INTERVAL = 1",
            "Dynamic mode: nginx workers pick up new backends on this tick.",
        ),
        Param(
            "nginx.reload_time",
            "duration",
            Uniform(0.1, 1.0),
            "[assumption] ingress-nginx before dynamic configuration",
            "[assumption] render nginx.conf, 'nginx -t' and reload; new workers serve with "
            "the new upstreams once started (sub-second for small configs)",
            "Reload mode: from the controller's sync to new workers using the new upstreams.",
        ),
        Param(
            "nginx.proxy_connect_timeout",
            "duration",
            Fixed(5.0),
            "ingress-nginx 2017-now",
            f"{ING} internal/ingress/controller/config/config.go proxy-connect-timeout 5",
            "A connect to a black-holed upstream (dead node) fails after this.",
        ),
        Param(
            "nginx.proxy_next_upstream_tries",
            "count",
            Fixed(3.0),
            "ingress-nginx 0.16.0+ (0 = unlimited before)",
            f"{ING} config.go proxy-next-upstream-tries 3; commit 7d8a0130a (PR #2554)",
            "Upstreams tried per request on 'error timeout' (0 = all of them).",
        ),
        Param(
            "nginx.load_balance",
            "choice",
            "round_robin",
            "ingress-nginx 0.21+ (load-balance ConfigMap key); plain nginx least_conn",
            f"{ING} docs/user-guide/nginx-configuration/configmap.md load-balance: "
            "'round_robin' default; nginx.org ngx_http_upstream_module 'least_conn': a "
            "request goes to the server with the least number of active connections",
            "How nginx picks the first upstream: round_robin (every upstream in turn, a "
            "black hole included), least_conn (a black hole's stuck connects keep it off) or "
            "ewma (ingress-nginx peak EWMA: the lower score of two random upstreams).",
            choices=("round_robin", "least_conn", "ewma"),
        ),
        Param(
            "nginx.upstream_time",
            "duration",
            Fixed(0.0006),
            "[assumption] nginx 1.x, any upstream answering a small GET at once",
            "[assumption] measured: nginx 1.22.1's $upstream_response_time over 2,046 "
            "requests at 340/s to three `python -m chaoslab.live.lab.server` on loopback "
            "(least_conn, load 0.4, 2 Dec 2026): mean 0.6 ms (the prober's own latency "
            "through it 1.39 ms mean); set your pods' response time",
            "Mean time a request keeps a live upstream's connection count up in nginx (connect "
            "to the response's end): least_conn finds a black hole again when every live "
            "upstream is busy.",
        ),
        Param(
            "nginx.worker_processes",
            "count",
            Fixed(1.0),
            "nginx 1.x (plain nginx; upstream without a zone)",
            "nginx.org ngx_core_module worker_processes 'Default: worker_processes 1;' "
            "(Debian 12's nginx.conf sets auto: one per CPU); ngx_http_upstream_module "
            "zone: without it each worker keeps the group's run-time state, the "
            "least_conn connection counts included, to itself",
            "nginx workers sharing the requests: least_conn without a zone balances each "
            "worker's share on its own counts (a black hole is found once per worker).",
            positive=True,
        ),
        Param(
            "nginx.round_robin_retry",
            "choice",
            "cycle",
            "ingress-nginx 0.21.0+ (controller-v0.21.0 to controller-v1.15.1: the dynamic "
            "Lua balancer, the only mode; load-balance round_robin); untried: nginx's own "
            "upstream round robin (reload mode, nginx.dynamic_configuration false)",
            f"{ING} controller-v1.15.1 rootfs/etc/nginx/lua/balancer.lua balance(): "
            "every try asks the backend's balancer again, set_more_tries(1); "
            "rootfs/etc/nginx/lua/balancer/round_robin.lua (resty.roundrobin since commit "
            "e9dc275b8, 2018-05) returns find(): the worker's next peer, no list of tried "
            "ones (openresty/lua-resty-balancer lib/resty/roundrobin.lua; issue #11852); "
            "openresty/lua-nginx-module src/ngx_http_lua_balancer.c set_more_tries caps "
            "the tries at proxy_next_upstream_tries. untried: nginx release-1.31.4 "
            "src/http/ngx_http_upstream_round_robin.c ngx_http_upstream_get_peer skips "
            "the peers set in the request's tried bitmap",
            "Round robin's retry after a dead upstream: untried (another upstream) or cycle "
            "(after a connect timeout any upstream again, the dead one included).",
            choices=("untried", "cycle"),
        ),
        Param(
            "nginx.ewma_decay_time",
            "duration",
            Fixed(10.0),
            "ingress-nginx 0.13.0+ (Changelog.md: #2229, load-balance: ewma)",
            f"{ING} controller-v1.15.0 rootfs/etc/nginx/lua/balancer/ewma.lua DECAY_TIME = 10",
            "ewma: an upstream's score decays as exp(-t / this) since it was last updated.",
            positive=True,
        ),
        Param(
            "ingress.ingresses",
            "count",
            Fixed(1.0),
            _CONV,
            f"{_CONV}: the app's own Ingress; set the number of Ingress objects the "
            "controller serves",
            "Ingress objects in the controller's configuration: its sync (building and "
            "posting the configuration, a reload's nginx -t) takes longer with more.",
        ),
        Param(
            "nginx.sync_time_per_ingress",
            "duration",
            Fixed(0.003),
            "[assumption] ingress-nginx 1.x",
            f"[assumption] a line through the origin and one published point: {ING} PR "
            "#11045 (2024-02-29): syncIngress about one and a half minutes at ~3,000 "
            "Ingresses, nginx -t and nginx -s reload about 40 s each, leaving ~10 s / 3,000 "
            "= ~3 ms per Ingress to build and post the configuration",
            "Controller sync time per Ingress (no reload): an endpoint change reaches the "
            "Lua balancer this much x ingress.ingresses after the sync starts.",
        ),
        Param(
            "nginx.reload_time_per_ingress",
            "duration",
            Fixed(0.027),
            "[assumption] ingress-nginx 1.x, reload mode",
            f"[assumption] a line through the origin and one published point: {ING} PR "
            "#11045 (2024-02-29): nginx -t and nginx -s reload about 40 s each at ~3,000 "
            "Ingresses (a 200 MB nginx.conf), ~80 s / 3,000 = ~27 ms per Ingress",
            "Reload mode: added to nginx.reload_time per Ingress in the configuration.",
        ),
        Param(
            "client.request_rate",
            "rate",
            Fixed(300.0),
            _CONV,
            f"{_CONV}: the lab's prober rate, 300 new connections per second "
            "(chaoslab.live.probe); set your service's request rate",
            "Requests per second reaching one nginx (least_conn: how often a black hole is "
            "picked again once its stuck connect timed out).",
        ),
        Param(
            "client.non_idempotent_share",
            "ratio",
            Fixed(0.0),
            _CONV,
            f"{_CONV}: probes are GETs; nginx does not pass a non-idempotent request that was "
            "sent to the next upstream (proxy_next_upstream, nginx 1.9.13+)",
            "Share of requests (POST, PATCH) that nginx does not retry on another upstream.",
        ),
        Param(
            "client.request_duration",
            "duration",
            LogNormal(0.001, 0.005),
            _CONV,
            f"{_CONV} [assumption]: a small GET over a new connection on a LAN is about "
            "1.5 round trips plus the server's time; measured through the lab's nginx "
            "(lab-ingress-*.yaml, the 1 s before each fault, 2 Dec 2026, load 1-3.5 on 2 "
            "cores): median 1.2-1.4 ms, p95 4.5-5.0 ms, p99 7.7-7.9 ms (new connections; "
            "at load 15-22 the same probes' p99 was 27-152 ms: CPU waits, not the network). "
            "Set it to your clients' request latency.",
            "Time from a request's SYN to its response. A request in flight when its path "
            "moves to another node that is also alive (VIP taken over by GARP while the old "
            "holder still serves, ECMP re-hash off a live next hop) is reset there (RFC 793 "
            "section 3.4: no connection state on the new node).",
        ),
        Param(
            "client.slow_threshold",
            "duration",
            Fixed(1.0),
            "[assumption] any version",
            "[assumption] an SLO-style latency threshold (a request answered later than "
            "this is slow, not failed); set your latency SLO's threshold",
            "A request that succeeds later than this counts as slow (slow_s).",
        ),
        Param(
            "client.long_lived_share",
            "ratio",
            Fixed(0.0),
            _CONV,
            f"{_CONV}: probes open a new connection each (chaoslab.live.probe)",
            "Share of requests sent over an established keep-alive connection opened before "
            "the fault (it fails while its path is hung; a reset one reconnects).",
        ),
        Param(
            "ingress.nodes",
            "choice",
            "controller",
            "openstack-helm ingress chart",
            f"{OSH}: node_selector openstack-control-plane=enabled (the controller nodes)",
            "Nodes the ingress (nginx, keepalived, BGP VIP) runs on.",
            choices=("controller", "compute", "worker"),
        ),
        Param(
            "ingress.replicas",
            "count",
            Fixed(1.0),
            "openstack-helm ingress chart",
            f"{OSH}: pod.replicas.ingress 1",
            "ingress-vip-pod: replicas of the ingress Deployment (the VIP follows the first).",
        ),
        Param(
            "ingress.namespace_replicas",
            "count",
            Fixed(2.0),
            _CONV,
            f"{_CONV}: two namespace-level ingress pods (ingress-tiered, the article's "
            "per-namespace ingress), spread over the workers",
            "ingress-tiered: replicas of the namespace-level (second tier) ingress.",
        ),
        # ------------------------------------------------------------ MetalLB L2
        Param(
            "memberlist.probe_interval",
            "duration",
            Fixed(1.0),
            "memberlist DefaultLANConfig (MetalLB 0.9+)",
            f"{ML_LIST}: ProbeInterval 1 s",
            "Each member probes one other member per interval (round robin).",
        ),
        Param(
            "memberlist.probe_timeout",
            "duration",
            Fixed(0.5),
            "memberlist DefaultLANConfig",
            f"{ML_LIST}: ProbeTimeout 500 ms",
            "Wait for a direct ack before indirect probes.",
        ),
        Param(
            "memberlist.suspicion_mult",
            "count",
            Fixed(4.0),
            "memberlist DefaultLANConfig",
            f"{ML_LIST}: SuspicionMult 4; util.go suspicionTimeout",
            "Suspicion min = mult x max(1, log10(n)) x probe interval.",
        ),
        Param(
            "memberlist.suspicion_max_timeout_mult",
            "count",
            Fixed(6.0),
            "memberlist DefaultLANConfig",
            f"{ML_LIST}: SuspicionMaxTimeoutMult 6",
            "Suspicion max = this x suspicion min (shrinks with confirmations).",
        ),
        Param(
            "memberlist.gossip_interval",
            "duration",
            Fixed(0.2),
            "memberlist DefaultLANConfig",
            f"{ML_LIST}: GossipInterval 200 ms",
            "Suspicions and deaths spread by gossip on this tick.",
        ),
        Param(
            "metallb.garp_interval",
            "duration",
            Fixed(1.1),
            "MetalLB 0.7+",
            f"{ML} internal/layer2/announcer.go spamLoop (1100 ms, issue #172)",
            "The new leader's gratuitous ARPs are spaced this far apart.",
        ),
        Param(
            "metallb.garp_duration",
            "duration",
            Fixed(5.0),
            "MetalLB 0.7+",
            f"{ML} internal/layer2/announcer.go spamLoop (5 s)",
            "...for this long after taking over the IP.",
        ),
        # ------------------------------------------------------------ kube-vip
        Param(
            "kube_vip.lease_duration",
            "duration",
            Fixed(15.0),
            "kube-vip v1.1.0+ (5 s before)",
            f"{KVIP} --leaseDuration; PR #1429",
            "Candidates force-acquire the lease this long after the last observed renewal.",
        ),
        Param(
            "kube_vip.renew_deadline",
            "duration",
            Fixed(10.0),
            "kube-vip v1.1.0+ (3 s before)",
            f"{KVIP} --leaseRenewDuration; PR #1429",
            "A leader that cannot renew for this long gives the VIP up.",
        ),
        Param(
            "kube_vip.retry_period",
            "duration",
            Fixed(2.0),
            "kube-vip v1.1.0+ (1 s before)",
            f"{KVIP} --leaseRetry; PR #1429",
            "Leader renews, candidates retry, every RetryPeriod (candidates jittered).",
        ),
        Param(
            "kube_vip.retry_jitter_factor",
            "count",
            Fixed(1.2),
            "client-go leaderelection (all)",
            "kubernetes/client-go tools/leaderelection JitterFactor = 1.2 with wait.Jitter "
            "(RetryPeriod to (1 + 1.2) x RetryPeriod)",
            "Candidate retry interval = RetryPeriod x U(1, 1 + factor).",
        ),
        Param(
            "kube_vip.arp_rate",
            "duration",
            Fixed(3.0),
            "kube-vip (all)",
            "kube-vip/kube-vip pkg/kubevip/config_environment.go vip_arpRate 3000 ms",
            "The leader broadcasts a gratuitous ARP every this long (the first at once).",
        ),
        # ------------------------------------------------------------ cloud LB
        Param(
            "cloud_lb.external_traffic_policy",
            "choice",
            "Cluster",
            "Kubernetes Service default",
            "kubernetes/kubernetes Service spec.externalTrafficPolicy defaults to Cluster",
            "cloud-lb: Cluster (every node forwards) or Local (health-check node port).",
            choices=("Cluster", "Local"),
        ),
        # ------------------------------------------------------------ network faults
        Param(
            "fault.daemon",
            "choice",
            "keepalived",
            "scenario",
            f"{_CONV}: the daemon a daemon-kill fault stops",
            "daemon-kill: which daemon (keepalived, bgp speaker, metallb speaker, kube-vip).",
            choices=("keepalived", "bgp", "metallb-speaker", "kube-vip"),
        ),
        Param(
            "fault.signal",
            "choice",
            "KILL",
            "scenario",
            f"{_CONV}: SIGKILL (crash) unless TERM (orderly stop) is asked for",
            "daemon-kill: KILL (no goodbye) or TERM (priority-0 advert, Cease, lease release).",
            choices=("KILL", "TERM"),
        ),
        Param(
            "fault.daemon_restart_time",
            "duration",
            Fixed(float("inf")),
            "scenario",
            f"{_CONV}: the killed daemon stays dead (as in the lab, without a supervisor); "
            "as a container in a pod it is back in about 1-2 s (kubernetes/kubernetes "
            "pkg/kubelet/kubelet.go genericPlegRelistPeriod 1 s; kubernetes/website "
            "content/en/docs/concepts/workloads/pods/pod-lifecycle.md: an initial crash is "
            "restarted immediately), e.g. restart: 1500ms",
            "daemon-kill: time until the killed daemon runs again (inf = never).",
        ),
        Param(
            "fault.link_down_duration",
            "duration",
            Fixed(60.0),
            "scenario",
            f"{_CONV}: a link that stays down for a minute (longer than every detector "
            "except BGP hold timers)",
            "link-down: time until the link is up again.",
        ),
    ]
)

# ============================================================================== profiles
require_positive(
    "vrrp.advert_int",
    "bfd.interval",
    "bfd.min_rx",
    "arp.router_timeout",
    "nginx.backends_sync_interval",
    "memberlist.probe_interval",
    "memberlist.gossip_interval",
    "kube_vip.retry_period",
    "kube_vip.arp_rate",
    "metallb.garp_interval",
)

register_profile(
    "keepalived",
    "vrrp",
    "keepalived defaults: VRRPv2, advert 1 s, priority 100, preempt, GARP 5 + 5 after 5 s.",
    {},
    default=True,
)
register_profile(
    "keepalived-osh",
    "vrrp",
    "The article's chart in keepalived mode (osixia/keepalived 1.4.5): state BACKUP, "
    "priority 150 on every replica, nopreempt, advert 1 s, VRRPv2, no track script.",
    {
        "vrrp.priority": (150, "osixia/docker-keepalived v1.4.5 KEEPALIVED_PRIORITY: 150"),
        "vrrp.nopreempt": (True, "osixia/docker-keepalived v1.4.5 keepalived.conf 'nopreempt'"),
        "vrrp.version": (2, f"{KA_MAN}: not set in the template, keepalived default 2"),
        "vrrp.advert_int": ("1s", f"{KA_H}: not set in the template, VRRP_ADVER_DFL 1"),
        "vrrp.garp_refresh_schedule": (
            "advert",
            "osixia/keepalived 1.4.5 is keepalived <= 2.3.1: the refresh rides the adverts",
        ),
    },
)

register_profile(
    "bird2",
    "bgp",
    "BIRD 2 defaults: hold 240 s (jittered 0-25 %), keepalive hold/3, connect delay 5 s, "
    "error wait 60 s, no BFD (BFD when enabled: tx 100 ms, rx 10 ms, multiplier 5). The "
    "router's side (its hold time, hold-timer jitter, flush) is the router family.",
    {},
    default=True,
)
register_profile(
    "calico-bird",
    "bgp",
    "Calico's generated BIRD config: graceful restart on (120 s), no hold time (BIRD's 240 s "
    "applies), connect delay 2 s, error wait 5 s, device scan every 2 s, no BFD.",
    {
        "bgp.graceful_restart": (True, f"{CALICO}: 'graceful restart;'"),
        "bgp.graceful_restart_time": ("120s", f"{CALICO}: nodeMeshMaxRestartTime unset"),
        "bgp.connect_delay": ("2s", f"{CALICO}: connect delay time 2"),
        "bgp.error_wait_time": ("5s", f"{CALICO}: error wait time 5,30"),
        "bgp.withdraw_delay": ("uniform(0s, 2s)", f"{CALICO}: protocol device scan time 2"),
        "bfd.enabled": (False, f"{CALICO}: no bfd in the templates"),
    },
)
register_profile(
    "frr-traditional",
    "bgp",
    "FRR bgpd 'frr defaults traditional': keepalive 60 s, hold 180 s, connect retry 30 s; "
    "BFD (bfdd) 300 ms x 3.",
    {
        "bgp.hold_time": ("180s", f"{FRR}: BGP_DEFAULT_HOLDTIME 180"),
        "bgp.keepalive_time": ("60s", f"{FRR}: BGP_DEFAULT_KEEPALIVE 60"),
        "bgp.connect_delay": ("uniform(0s, 30s)", f"{FRR}: BGP_DEFAULT_CONNECT_RETRY 30"),
        "bgp.error_wait_time": ("uniform(0s, 30s)", f"{FRR}: reconnect on the connect timer"),
        "bfd.interval": ("300ms", "FRRouting/frr doc/user/bfd.rst transmit-interval 300"),
        "bfd.min_rx": ("300ms", "FRRouting/frr doc/user/bfd.rst receive-interval 300"),
        "bfd.multiplier": (3, "FRRouting/frr doc/user/bfd.rst detect-multiplier 3"),
    },
)
register_profile(
    "frr-datacenter",
    "bgp",
    "FRR bgpd 'frr defaults datacenter': keepalive 3 s, hold 9 s, connect 10 s; BFD 300 ms x 3.",
    {
        "bgp.hold_time": ("9s", f"{FRR_DC}: holdtime 9"),
        "bgp.keepalive_time": ("3s", f"{FRR_DC}: keepalive 3"),
        "bgp.connect_delay": ("uniform(0s, 10s)", f"{FRR_DC}: connect retry 10"),
        "bgp.error_wait_time": ("uniform(0s, 10s)", f"{FRR_DC}: reconnect on the connect timer"),
        "bfd.interval": ("300ms", "FRRouting/frr doc/user/bfd.rst transmit-interval 300"),
        "bfd.min_rx": ("300ms", "FRRouting/frr doc/user/bfd.rst receive-interval 300"),
        "bfd.multiplier": (3, "FRRouting/frr doc/user/bfd.rst detect-multiplier 3"),
    },
)
register_profile(
    "gobgp",
    "bgp",
    "GoBGP defaults: hold 90 s, keepalive 30 s, connect retry 120 s, idle hold after reset "
    "30 s; BFD 1 s x 3.",
    {
        "bgp.hold_time": ("90s", f"{GOBGP}: DEFAULT_HOLDTIME 90"),
        "bgp.keepalive_time": ("30s", f"{GOBGP}: keepalive = hold/3"),
        "bgp.connect_delay": ("uniform(0s, 120s)", f"{GOBGP}: connect-retry 120"),
        "bgp.error_wait_time": ("30s", f"{GOBGP}: idle-hold-time-after-reset 30"),
        "bgp.graceful_restart_time": ("90s", f"{GOBGP}: restart-time defaults to the hold time"),
        "bfd.interval": ("1s", f"{GOBGP}: BFD desired-minimum-tx-interval 1 s"),
        "bfd.min_rx": ("1s", f"{GOBGP}: BFD required-minimum-receive 1 s"),
        "bfd.multiplier": (3, f"{GOBGP}: BFD detection-multiplier 3"),
    },
)
register_profile(
    "metallb-native",
    "bgp",
    "MetalLB native BGP speaker: hold 90 s explicitly (keepalive 30 s), no BFD.",
    {
        "bgp.hold_time": (
            "90s",
            f"{ML} internal/bgp/native/native.go ('explicitly set it to 90s')",
        ),
        "bgp.keepalive_time": ("30s", f"{ML} native.go parseTimers: keepalive = hold/3"),
        "bfd.enabled": (False, f"{ML} BFD only in the FRR modes"),
    },
)
register_profile(
    "metallb-frr",
    "bgp",
    "MetalLB FRR mode: 'frr defaults traditional' (180/60 unless set on the BGPPeer); BFD "
    "profile 300/300 ms, multiplier 3 (FRR's) when a bfdProfile is set.",
    {
        "bgp.hold_time": ("180s", f"{ML} config/frr/frr-cm.yaml 'frr defaults traditional'"),
        "bgp.keepalive_time": ("60s", f"{FRR}: BGP_DEFAULT_KEEPALIVE 60"),
        "bgp.connect_delay": ("uniform(0s, 30s)", f"{FRR}: BGP_DEFAULT_CONNECT_RETRY 30"),
        "bgp.error_wait_time": ("uniform(0s, 30s)", f"{FRR}: reconnect on the connect timer"),
        "bfd.interval": ("300ms", f"{ML} api/v1beta1/bfdprofile_types.go transmitInterval 300"),
        "bfd.min_rx": ("300ms", f"{ML} api/v1beta1/bfdprofile_types.go receiveInterval 300"),
        "bfd.multiplier": (3, f"{ML} bfdprofile_types.go: no default, FRR's 3 applies"),
    },
)

# The router the speakers peer with (issue 11 item 2): its hold timer detects a silent
# node, so hold-timer jitter, the flush after a hold expiry and the time to the kernel or
# hardware route are the router's, picked independently of the speakers' profile.
register_profile(
    "router-bird2",
    "router",
    "BIRD 2 as the router (the lab's): proposes hold 240 s, re-arms its hold timer 0-25 % "
    "short, flushes 0.02-1.9 s after a hold expiry, installs a route change in the kernel "
    "within ~2 ms; ECMP with 'merge paths on'.",
    {
        "bgp.hold_timer_jitter": (0.25, f"{BIRD}: bgp_start_timer() (RFC 4271 section 10)"),
        "bgp.hold_expiry_flush_delay": (
            "empirical(20ms, 580ms, 1.07s, 430ms, 250ms, 50ms, 1.9s)",
            "chaoslab lab: BIRD 2.0.12 (Debian 12), hold 9 s, 7 hold expiries, from the "
            "'Hold timer expired' log line to the kernel route change (docs/lab.md)",
        ),
        "router.fib_update_time": (
            "uniform(0s, 2ms)",
            "chaoslab lab: BIRD 2.0.12, closed session or BFD down to the kernel route change "
            "(ip -ts monitor route) within 2 ms (docs/lab.md)",
        ),
    },
    default=True,
    covers="BIRD 2.0.x-2.19 (bird.sgml v2.19.2; measured with 2.0.12 on Debian 12)",
)
register_profile(
    "router-frr",
    "router",
    "FRR 8.4 as the router ('frr defaults traditional'): proposes hold 180 s, no hold-timer "
    "jitter, no flush lag after a hold expiry, zebra installs a route change in the kernel "
    "70-85 ms after the session or BFD went down; ECMP.",
    {
        "bgp.peer_hold_time": ("180s", f"{FRR}: BGP_DEFAULT_HOLDTIME 180"),
        "bgp.hold_timer_jitter": (
            0.0,
            "chaoslab lab (FRR 8.4.4, Debian 12; BIRD speaker, hold 9 s, keepalive 3 s): 7 "
            "hold expiries at 7.10-8.66 s after the speaker went silent, inside the RFC "
            "window [hold - keepalive, hold]; FRRouting/frr bgpd/bgp_fsm.c bgp_timer_set() "
            "starts the hold timer at the negotiated hold time",
        ),
        "bgp.hold_expiry_flush_delay": (
            "0s",
            "chaoslab lab (FRR 8.4.4): from 'holdtime timer expire' to the kernel route the "
            "same 70-84 ms as after a closed session (router.fib_update_time)",
        ),
        "router.fib_update_time": (
            "empirical(70.4ms, 83.4ms, 79.6ms, 82.0ms, 77.5ms, 74.9ms, 70.4ms, 77.5ms, "
            "74.3ms, 83.5ms, 70.7ms, 76.2ms, 84.0ms, 73.1ms, 79.4ms, 73.0ms, 70.3ms, 70.4ms, "
            "70.5ms, 71.0ms, 70.4ms)",
            "chaoslab lab, 2 Dec 2026 (FRR 8.4.4 zebra + bgpd + bfdd, Debian 12, load average "
            "17-19 on 2 cores): bgpd's 'went from Established to Clearing' log line to the "
            "route's deletion in 'ip -ts monitor route': 8 closed sessions (speaker SIGKILL), "
            "7 hold expiries, 6 BFD downs (100 ms x 3)",
        ),
    },
    covers="FRR 8.4.4 (Debian 12) measured; timers of 'frr defaults traditional' (bgpd.h)",
)
register_profile(
    "router-hardware",
    "router",
    "A typical hardware router with vendor defaults (Cisco IOS): hold 180 s, keepalive "
    "60 s, no timer jitter, one best BGP path (maximum-paths 1, oldest external path "
    "preferred), ARP cache refreshed only every 4 h.",
    {
        "bgp.peer_hold_time": (
            "180s",
            "O'Reilly, Cisco IOS in a Nutshell, 'timers bgp': keepalive 60 s, holdtime 180 s",
        ),
        "router.multipath": (
            False,
            "O'Reilly, Cisco IOS in a Nutshell, 'maximum-paths': default 1 for BGP; Cisco IOS "
            "IP Configuration Guide: 'By default, BGP will install only one path'",
        ),
        "router.best_path": (
            "oldest",
            "Cisco IOS BGP best path selection: of two external paths prefer the one received "
            "first (the oldest), RFC 5004",
        ),
        "router.fib_update_time": (
            "uniform(10ms, 500ms)",
            "[assumption] BGP RIB to CEF to the hardware table for one prefix; no vendor "
            "publishes a default",
        ),
        "arp.neighbor": ("router", "router ARP cache: no NUD, a fixed timeout"),
        "arp.router_timeout": ("4h", "O'Reilly, Cisco IOS in a Nutshell, 'arp timeout' 14400 s"),
    },
    covers="Cisco IOS 12.x-15.x defaults as documented (no vendor measurement)",
)

register_profile(
    "ingress-nginx",
    "ingress-nginx",
    "ingress-nginx 0.21+: dynamic Lua balancer (1 s worker sync), proxy_next_upstream "
    "'error timeout', tries 3, connect timeout 5 s.",
    {},
    default=True,
)
register_profile(
    "ingress-nginx-2018",
    "ingress-nginx",
    "ingress-nginx 0.15 (spring 2018, the article's era): nginx.conf upstreams with "
    "max_fails=0 fail_timeout=0, reload on every endpoint change, unlimited tries.",
    {
        "nginx.dynamic_configuration": (False, f"{ING} Changelog: dynamic default only from 0.18"),
        "nginx.proxy_next_upstream_tries": (
            0,
            f"{ING} config.go before commit 7d8a0130a (0.16.0): tries 0 = unlimited",
        ),
    },
)

register_profile(
    "kube-vip-1.1",
    "kube-vip",
    "kube-vip v1.1.0+: lease 15 s, renew deadline 10 s, retry 2 s; GARP every 3 s.",
    {},
    default=True,
)
register_profile(
    "kube-vip-1.0",
    "kube-vip",
    "kube-vip before v1.1.0: lease 5 s, renew deadline 3 s, retry 1 s; GARP every 3 s.",
    {
        "kube_vip.lease_duration": ("5s", f"{KVIP} before PR #1429"),
        "kube_vip.renew_deadline": ("3s", f"{KVIP} before PR #1429"),
        "kube_vip.retry_period": ("1s", f"{KVIP} before PR #1429"),
    },
)
