"""Errors of the local control plane, each one line for the CLI."""

from __future__ import annotations

from chaoslab.errors import LiveError, UserError

__all__ = ["BuildMissing", "ClusterError", "ComponentFailed", "StateInUse", "UnsupportedTimer"]


class ClusterError(LiveError):
    """A step of bringing the local cluster up or down failed."""


class ComponentFailed(ClusterError):
    """A component exited or did not become healthy in time; names its log file."""


class BuildMissing(UserError):
    """The Go build of the control plane is absent: run ./install.sh or tools/build.sh."""


class StateInUse(UserError):
    """The state folder already holds a cluster (running or left over)."""


class UnsupportedTimer(UserError):
    """A parameter value the real components cannot be configured with."""
