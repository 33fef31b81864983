"""Exposure designs: how outside clients reach the service, and what fails over.

``DESIGNS`` maps the YAML key of each design to its `Design`. Families live in their own
modules (``nodeport``; the network designs in ``network``; the cloud load balancers in
``cloud``) and are merged below, in that order.
"""

from chaoslab.designs.base import Design, Flow, ImpossibleTarget, Topology, initial_app_nodes
from chaoslab.designs.cloud import DESIGNS as _CLOUD
from chaoslab.designs.network import DESIGNS as _NETWORK
from chaoslab.designs.nodeport import DESIGNS as _NODEPORT

DESIGNS: dict[str, Design] = {**_NODEPORT, **_NETWORK, **_CLOUD}

__all__ = ["DESIGNS", "Design", "Flow", "ImpossibleTarget", "Topology", "initial_app_nodes"]
