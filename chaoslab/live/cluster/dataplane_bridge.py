"""A byte relay between a TCP socket and a unix socket: the bridge that lets processes in a
node's network namespace reach the API server on host loopback.

Two halves, each one process::

    node namespace                      state folder               host namespace
    kube-proxy -> 127.0.0.1:6443 ==> relay --listen tcp:... --connect unix:S
                                     S = api-<node>.sock <== relay --listen unix:S --connect
                                                                  tcp:127.0.0.1:<apiserver>

A unix socket is a file, not an interface, so it crosses network namespaces without a
route, a veth or an address outside loopback: nothing leaves loopback or the namespaces
chaoslab created. TLS passes through untouched (the relay never reads the bytes), so the
client checks the API server's serving certificate against 127.0.0.1, one of its SANs.

``python -m chaoslab.live.cluster.dataplane_bridge --listen unix:A --listen unix:B
--connect tcp:127.0.0.1:6443`` serves several listeners (one per node) in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["Endpoint", "main", "relay"]

#: bytes read at a time; a relay of API traffic needs no tuning beyond this
_CHUNK = 65536


@dataclass(frozen=True)
class Endpoint:
    """``tcp:HOST:PORT`` or ``unix:PATH``."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest:
            return cls("unix", path=rest)
        host, _, port = rest.rpartition(":")
        if kind == "tcp" and host and port.isdigit():
            return cls("tcp", host=host, port=int(port))
        raise argparse.ArgumentTypeError(f"{text!r}: expected tcp:HOST:PORT or unix:PATH")

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.kind == "unix":
            return await asyncio.open_unix_connection(self.path)
        return await asyncio.open_connection(self.host, self.port)

    async def serve(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> asyncio.AbstractServer:
        if self.kind == "unix":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # a relay killed by SIGKILL leaves its socket file
            return await asyncio.start_unix_server(handler, self.path)
        return await asyncio.start_server(handler, self.host, self.port, reuse_address=True)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()  # half-close: TLS close_notify and the peer's FIN pass through
    except (ConnectionError, OSError):
        dst.close()


def relay(
    target: Endpoint,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A connection handler that opens ``target`` and copies bytes both ways until both end."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await target.open()
        except OSError:
            w.close()  # the API server is down: the client sees its connection closed
            return
        try:
            await asyncio.gather(_pump(r, tw), _pump(tr, w))
        finally:
            for s in (w, tw):
                with contextlib.suppress(Exception):
                    s.close()

    return handle


async def _serve(listen: Sequence[Endpoint], target: Endpoint) -> None:
    servers = [await ep.serve(relay(target)) for ep in listen]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"relaying {', '.join(map(str, listen))} -> {target}", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chaoslab.live.cluster.dataplane_bridge")
    ap.add_argument("--listen", type=Endpoint.parse, action="append", required=True)
    ap.add_argument("--connect", type=Endpoint.parse, required=True)
    a = ap.parse_args(argv)
    asyncio.run(_serve(a.listen, a.connect))
    return 0


if __name__ == "__main__":
    sys.exit(main())
