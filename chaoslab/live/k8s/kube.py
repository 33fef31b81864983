"""A thin JSON layer over the official ``kubernetes`` client, with a clock-offset estimate.

The client's configuration (kubeconfig, context, TLS, auth plugins) and its HTTP stack are
used as they are; requests and answers are plain dicts (``_preload_content=False`` style)
so the drill does not depend on the generated models' strict validation of every field a
real server may leave out. TLS verification must be on: a context that disables it is
refused. Credentials never leave the client's configuration: errors carry the status and
the server's message only, never request headers.

Every answer's ``Date`` header feeds :class:`ClockOffset`, which bounds the API server's
clock against the local monotonic clock (Kubernetes timestamps are whole seconds; the
``Date`` header is too, so many requests at different sub-second phases narrow it down).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["ClockOffset", "Kube", "KubeError", "load_kube", "parse_time"]

from chaoslab.errors import LiveError
from chaoslab.results import redact_userinfo

Obj = dict[str, Any]


class KubeError(LiveError):
    """An API call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        message = redact_userinfo(message)
        if status == 0:  # no HTTP answer: no status to show
            text = message
        else:
            text = f"{status} {reason}: {message}" if reason else f"{status}: {message}"
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.message = message


def parse_time(text: str | None) -> float | None:
    """A Kubernetes timestamp (RFC 3339, seconds or microseconds) as POSIX seconds."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class ClockOffset:
    """Bounds on ``server_time - time.monotonic()`` from answers with a ``Date`` header.

    One answer generated at server time s, with s in [D, D + 1) for a Date of D whole
    seconds, received between local monotonic m0 and m1, bounds the offset to
    [D - m1, D + 1 - m0]; the estimate is the middle of the intersection of all bounds.
    """

    lo: float = -math.inf
    hi: float = math.inf
    samples: int = 0
    conflicts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, date_header: str | None, m0: float, m1: float) -> None:
        if not date_header:
            return
        try:
            d = email.utils.parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError):
            return
        lo, hi = d - m1, d + 1.0 - m0
        with self._lock:
            self.samples += 1
            nlo, nhi = max(self.lo, lo), min(self.hi, hi)
            if nlo > nhi:
                # the server clock stepped (NTP) or our bound was wrong: start over from here
                self.conflicts += 1
                nlo, nhi = lo, hi
            self.lo, self.hi = nlo, nhi

    @property
    def offset(self) -> float:
        """server POSIX time - local monotonic time (nan before the first sample)."""
        if not self.samples:
            return math.nan
        return (self.lo + self.hi) / 2

    @property
    def uncertainty(self) -> float:
        return (self.hi - self.lo) / 2 if self.samples else math.inf

    def to_local(self, server_posix: float | None) -> float | None:
        """A server timestamp on the local monotonic clock."""
        if server_posix is None or not self.samples:
            return None
        return server_posix - self.offset

    def as_dict(self) -> dict[str, float | int]:
        return {
            "server_minus_monotonic_s": self.offset,
            "uncertainty_s": self.uncertainty,
            "samples": self.samples,
            "conflicts": self.conflicts,
            # the local wall clock against the monotonic one, to relate both to UTC
            "wall_minus_monotonic_s": time.time() - time.monotonic(),
        }


class Kube:
    """JSON requests against the API server of one kubeconfig context."""

    def __init__(
        self,
        api_client: Any,
        *,
        context: str | None,
        timeout: float,
        retries: int = 0,
        retry_wait: float = 0.0,
    ) -> None:
        self.api = api_client
        self.context = context
        self.timeout = timeout  # per request; watches use their own
        # reads that fail transiently (no answer, 429, 5xx) are retried; writes never are
        # here: the drill journals them and decides itself
        self.retries = retries
        self.retry_wait = retry_wait
        self.retried = 0
        self.clock = ClockOffset()
        if not getattr(api_client.configuration, "verify_ssl", True):
            raise KubeError(
                0,
                f"context {context!r} turns TLS verification off "
                "(insecure-skip-tls-verify); chaoslab refuses to drive a "
                "cluster it cannot authenticate",
            )

    @property
    def host(self) -> str:
        """The API server's URL as it may be shown and stored (no userinfo)."""
        return redact_userinfo(str(self.api.configuration.host))

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        q = ""
        if query:
            q = "?" + "&".join(
                f"{k}={quote(str(v), safe='')}" for k, v in query.items() if v is not None
            )
        return self.api.configuration.host + path + q

    def _headers(self, content_type: str | None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": "chaoslab-drill"}
        if content_type:
            h["Content-Type"] = content_type
        # auth headers come from the client configuration (token, plugins, refresh)
        self.api.update_params_for_auth(h, [], ["BearerToken"], "", "GET", None)
        return h

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Obj:
        # one deadline for the request and its retries: the configured timeout, total
        budget = timeout or self.timeout
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            left = max(deadline - time.monotonic(), 0.001)
            try:
                return self._request(
                    method, path, query=query, body=body, content_type=content_type, timeout=left
                )
            except KubeError as e:
                transient = e.status == 0 or e.status == 429 or 500 <= e.status <= 504
                late = deadline - time.monotonic() <= self.retry_wait
                if method != "GET" or not transient or attempt >= self.retries or late:
                    if e.status == 0 and deadline - time.monotonic() <= 0:
                        raise KubeError(
                            0,
                            f"API server {self.host} did not answer {method} {path} "
                            f"within {budget:g}s",
                        ) from None
                    raise
                attempt += 1
                self.retried += 1
                time.sleep(self.retry_wait)

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str | None,
        timeout: float | None,
    ) -> Obj:
        if body is not None and content_type is None:
            content_type = "application/json"
        m0 = time.monotonic()
        try:
            resp = self.api.call_api(
                method,
                self._url(path, query),
                header_params=self._headers(content_type),
                body=body,
                _request_timeout=timeout or self.timeout,
            )
            data = resp.read()
        except Exception as exc:  # no answer: connection refused, TLS, timeout
            raise KubeError(
                0, f"API server {self.host}: {_no_answer(exc)} ({method} {path})"
            ) from None
        m1 = time.monotonic()
        self.clock.add(resp.getheader("Date"), m0, m1)
        try:
            obj = json.loads(data) if data else {}
        except ValueError:
            obj = {}
        if not 200 <= resp.status < 300:
            msg = obj.get("message") if isinstance(obj, dict) else None
            raise KubeError(
                resp.status,
                f"{method} {path}: {msg or resp.reason}",
                obj.get("reason", "") if isinstance(obj, dict) else "",
            )
        return obj if isinstance(obj, dict) else {"items": obj}

    # ---------------------------------------------------------------- conveniences
    def get(self, path: str, **query: Any) -> Obj:
        return self.request("GET", path, query=query or None)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def merge_patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        """DELETE; a missing object is not an error (every undo step is idempotent)."""
        try:
            return self.request("DELETE", path, body=body or {})
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def version(self) -> Obj:
        return self.get("/version")

    def sample_clock(self, n: int, spacing: float) -> ClockOffset:
        """``n`` quick requests ``spacing`` s apart at different sub-second phases."""
        for i in range(n):
            self.version()
            if i + 1 < n:
                time.sleep(spacing)
        return self.clock

    def watch_lines(
        self,
        path: str,
        query: Mapping[str, Any],
        read_timeout: float,
        stop: threading.Event,
        holder: list[Any] | None = None,
    ) -> Iterator[Obj]:
        """One watch request: yields watch events (dicts) until the server ends the stream.

        Raises KubeError for an error answer; a dropped connection ends the iterator with
        an exception the caller turns into a resume."""
        url = self._url(path, {**query, "watch": "true"})
        resp = self.api.call_api(
            "GET",
            url,
            header_params=self._headers(None),
            _request_timeout=(self.timeout, read_timeout),
        )
        if not 200 <= resp.status < 300:
            data = resp.read()
            try:
                msg = json.loads(data).get("message", "")
            except ValueError:
                msg = ""
            raise KubeError(resp.status, f"watch {path}: {msg or resp.reason}")
        raw = resp.response
        if holder is not None:  # lets another thread cut a stream that waits for data
            holder[:] = [raw]
        buf = b""
        try:
            for chunk in raw.stream(4096, decode_content=True):
                if stop.is_set():
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()
            raw.close()


def _no_answer(exc: BaseException) -> str:
    """Why no answer came, in words: the cause urllib3 wraps in MaxRetryError reprs."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain and len(chain) < 8:
        chain.append(e)
        reason = getattr(e, "reason", None)
        e = reason if isinstance(reason, BaseException) else e.__cause__ or e.__context__
    for c in chain:
        name = type(c).__name__
        if isinstance(c, ConnectionRefusedError) or "Connection refused" in str(c):
            return "connection refused"
        if isinstance(c, socket.gaierror) or name == "NameResolutionError":
            return "cannot resolve its host name"
        if "Timeout" in name or isinstance(c, TimeoutError):
            return "no answer in time"
        if isinstance(c, ssl.SSLError):
            return f"TLS/SSL handshake failed: {c.reason or _first_line(c)}"
        if isinstance(c, ConnectionError):
            return f"connection failed: {c.strerror or _first_line(c)}"
    return _first_line(chain[-1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def load_kube(
    kubeconfig: str | None,
    context: str | None,
    timeout: float,
    *,
    retries: int = 0,
    retry_wait: float = 0.0,
) -> Kube:
    """Load a kubeconfig context (``KUBECONFIG`` / ``~/.kube/config`` when not given)."""
    from kubernetes import config as kconfig

    if kubeconfig:
        kubeconfig = os.path.expanduser(kubeconfig)
    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if not os.path.exists(os.path.expanduser(where.split(os.pathsep)[0])):
        raise KubeError(0, f"kubeconfig {where}: no such file")
    try:
        api = kconfig.new_client_from_config(config_file=kubeconfig, context=context)
    except Exception as exc:  # bad file, unknown context, missing credentials
        which = f"context {context!r}" if context else "its current context"
        raise KubeError(0, f"cannot load kubeconfig {where}, {which}: {_first_line(exc)}") from None
    # one attempt is one attempt: urllib3's own retries (3 by default) would multiply
    # the timeout; Kube.request retries reads itself, within one deadline
    api.rest_client.pool_manager.connection_pool_kw["retries"] = False
    api.rest_client.pool_manager.clear()
    return Kube(api, context=context, timeout=timeout, retries=retries, retry_wait=retry_wait)
