"""API-server trouble gets one clear line within the configured timeout, and a password in
the server URL is never shown or stored (issue 14, items 6 and 15). Loopback only."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from k8s.fakeapi import _make_tls  # tests/ is on sys.path (rootdir)

from chaoslab.live.journal import Journal
from chaoslab.live.k8s.kube import KubeError, load_kube
from chaoslab.results import RunWriter

PASSWORD = "hunter2-pw"


class _Silent:
    """A loopback listener that accepts connections and never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()
        self._thread.join(5)


@pytest.fixture
def silent() -> Iterator[_Silent]:
    s = _Silent()
    yield s
    s.close()


def _kubeconfig(tmp_path: Path, port: int) -> Path:
    ca_pem, _, _ = _make_tls(tmp_path)
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [
            {
                "name": "k",
                "cluster": {
                    "server": f"https://admin:{PASSWORD}@127.0.0.1:{port}",
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "u", "user": {"token": "t0ken-abc"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }
    p = tmp_path / "kubeconfig"
    p.write_text(json.dumps(cfg))
    return p


def _free_port() -> int:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


def test_a_server_that_never_answers_costs_one_attempt_and_one_line(
    silent: _Silent, tmp_path: Path
) -> None:
    kube = load_kube(str(_kubeconfig(tmp_path, silent.port)), None, 1.0, retries=3)
    with pytest.raises(KubeError) as err:
        kube.get("/api/v1/nodes")
    msg = str(err.value)
    assert msg == (
        f"API server https://***@127.0.0.1:{silent.port} did not answer GET /api/v1/nodes within 1s"
    )
    # the deadline is the timeout, retries included: no second connection after it
    assert len(silent.accepted) == 1


def test_a_refused_connection_says_so_without_urllib3_reprs(tmp_path: Path) -> None:
    port = _free_port()
    kube = load_kube(str(_kubeconfig(tmp_path, port)), None, 2.0)
    with pytest.raises(KubeError) as err:
        kube.get("/version")
    msg = str(err.value)
    assert msg == f"API server https://***@127.0.0.1:{port}: connection refused (GET /version)"
    assert err.value.exit_code == 1


def test_a_missing_kubeconfig_and_the_current_context_are_named(tmp_path: Path) -> None:
    with pytest.raises(KubeError, match=r"^kubeconfig .*/nope: no such file$"):
        load_kube(str(tmp_path / "nope"), None, 1.0)
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    with pytest.raises(KubeError) as err:
        load_kube(str(bad), None, 1.0)
    assert "its current context" in str(err.value) and "None" not in str(err.value)


def test_the_server_url_is_shown_and_stored_without_its_password(
    silent: _Silent, tmp_path: Path
) -> None:
    kube = load_kube(str(_kubeconfig(tmp_path, silent.port)), None, 1.0)
    assert PASSWORD not in kube.host and kube.host.startswith("https://***@127.0.0.1:")
    # what the drill writes: its plan's server in meta.json, API errors in the journal
    raw = f"https://admin:{PASSWORD}@127.0.0.1:{silent.port}"
    w = RunWriter(tmp_path / "run", mode="live", target="kubernetes", meta={"api_server": raw})
    w.finish_partial(reason=f"GET {raw}/api failed")
    Journal(tmp_path / "run").write("run.error", error=f"cannot reach {raw}", nested=[raw])
    for f in (tmp_path / "run").iterdir():
        if f.is_file():
            assert PASSWORD not in f.read_text(errors="replace"), f.name
