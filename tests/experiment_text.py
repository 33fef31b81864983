"""Experiment-file text shared by tests that need a drill's sections but no cluster."""

from __future__ import annotations

#: client:, probe: and a live: section of a user's cluster (an address no test reaches:
#: every test using it is refused, or only validated, before anything connects)
LIVE_SECTIONS = """\
client: {timeout: 500ms}
probe: {rate: 20, probers: 2, bin: 100ms}
live:
  namespace: demo
  urls: ["http://192.0.2.10:30080/"]
  workload: {kind: Deployment, name: web}
  service: web
  trials: 1
  cooldown: 3s
  limits: {max_outage: 120s, trial_timeout: 150s, node_return: 60s}
  preflight: {window: 3s, timeout: 120s}
  settle: 3s
  poll: 200ms
  api_timeout: 10s
"""
