"""The lab's HTTP servers: the service on a node or in a pod, and a kube-proxy-style
health-check node port.

``python -m chaoslab.live.lab.server --port 80 --name n1`` answers every request with
``200`` and the body ``n1`` (so a probe knows which node or pod served it), with HTTP/1.1
keep-alive for long-lived probe connections.

``--health-endpoints K`` turns it into the ``externalTrafficPolicy: Local`` health check
(kube-proxy ``pkg/proxy/healthcheck/service_health.go``): ``200`` with
``{"localEndpoints": K}`` when K > 0, else ``503``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence


def http_handler(
    name: str, health: int | None
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """An asyncio connection handler answering every request (see the module docstring)."""
    if health is None:
        status, body = 200, f"{name}\n".encode()
    else:
        status = 200 if health > 0 else 503
        body = f'{{"service": "{name}", "localEndpoints": {health}}}\n'.encode()
    reason = "OK" if status == 200 else "Service Unavailable"
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}"

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await r.readline()
                if not line:
                    break
                keep = not line.rstrip().endswith(b"HTTP/1.0")
                while (h := await r.readline()) not in (b"\r\n", b"\n", b""):
                    low = h.lower()
                    if low.startswith(b"connection:"):
                        keep = b"close" not in low
                w.write(
                    f"{head}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode()
                    + body
                )
                await w.drain()
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                w.close()

    return handle


async def _serve(bind: str, port: int, name: str, health: int | None) -> None:
    srv = await asyncio.start_server(
        http_handler(name, health), bind, port, reuse_address=True, backlog=1024
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving {name} on {bind}:{port}", flush=True)
    async with srv:
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.lab.server")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--health-endpoints", type=int, default=None)
    # not read: it makes the command line unique on the machine, which is what keepalived's
    # vrrp_track_process matches (process events are not per network namespace)
    ap.add_argument("--lab", default="", help="the lab namespace serving (for process trackers)")
    a = ap.parse_args(argv)
    asyncio.run(_serve(a.bind, a.port, a.name, a.health_endpoints))
    return 0


if __name__ == "__main__":
    sys.exit(main())
