"""Timing-parameter catalogue, profiles, distributions and resolved parameter sets.

Importing this package registers every parameter and profile: the Kubernetes and LB
knobs here, and the network knobs in ``chaoslab.params.network``.
"""

from chaoslab.params import faults as _faults  # noqa: F401
from chaoslab.params import k8s as _k8s  # noqa: F401  (registers parameters)
from chaoslab.params import lb as _lb  # noqa: F401
from chaoslab.params import network as _network  # noqa: F401
from chaoslab.params import rates as _rates  # noqa: F401
from chaoslab.params.catalogue import (
    CATALOGUE,
    PROFILES,
    Param,
    Profile,
    UnknownParameter,
    UnknownProfile,
    lookup,
    profile,
)
from chaoslab.params.dists import Dist, ParseError, format_seconds, parse_duration, parse_value
from chaoslab.params.paramset import ParamSet, ProfileConflict, Sampler

__all__ = [
    "CATALOGUE",
    "PROFILES",
    "Dist",
    "Param",
    "ParamSet",
    "ParseError",
    "Profile",
    "ProfileConflict",
    "Sampler",
    "UnknownParameter",
    "UnknownProfile",
    "format_seconds",
    "lookup",
    "parse_duration",
    "parse_value",
    "profile",
]
