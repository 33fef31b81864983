"""Live mode: drills against real systems.

``probe`` is the prober both live targets share; ``lab`` is the local lab of real daemons in
network namespaces; ``k8s`` drives a Kubernetes cluster.
"""
