"""The local lab: real keepalived, BIRD, HAProxy, nginx and iptables in network namespaces.

``spec`` is the ``lab:`` section of an experiment file, ``netns`` the namespaces, processes
and on-disk state, ``base`` and the design modules the topologies, ``watch`` the milestones
from daemon logs, ``drill`` the trials and the comparison with the model.
"""
