"""Live drills on a Kubernetes cluster (``chaoslab drill``).

``spec`` is the ``live:`` section's shape; ``kube`` the JSON layer over the official client
with the clock-offset estimate; ``discover`` what the model needs from the cluster;
``inject`` the faults and their undo steps; ``observe`` the watches and milestones;
``journal`` the on-disk record every rollback works from; ``drill`` puts them together.
Imports of the ``kubernetes`` package stay inside ``kube.load_kube`` so that reading a
spec or a journal does not need it.
"""

from chaoslab.live.k8s.spec import LiveSpec

__all__ = ["LiveSpec"]
