"""CurveZMQ and endpoint checks of the daemon's Guard on real loopback sockets: which endpoints are local,
who gets the events, what a refused or failed client leaves in the log, one-line errors for bad keys."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
import zmq

from instrumentd.clients.cli import main
from instrumentd.clients.keys import make_keys
from instrumentd.daemon import events
from instrumentd.daemon.config import Config
from instrumentd.daemon.publisher import Publisher
from instrumentd.daemon.security import CurveKeyError, Guard, client_context, is_local
from instrumentd.model.classes import CLASSES

from ..conftest import free_port, one_line_error


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.8.9.10:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///run/instrumentd.sock", True), ("inproc://events", True),
    ("tcp://*:5555", False), ("tcp://0.0.0.0:5555", False), ("tcp://192.168.1.20:5555", False),
    ("tcp://eth0:5555", False), ("tcp://example.org:5555", False), ("tcp://[::]:5555", False),
    ("tcp://127.0.0.1;0.0.0.0:5555", False), ("tcp://127.0.0.1:5555/x", False),
])
def test_which_endpoints_are_local(endpoint, local):
    assert is_local(endpoint) is local


def test_defaults_are_loopback():
    cfg = Config()
    assert is_local(cfg.pub) and is_local(cfg.replay) and not cfg.insecure and not cfg.curve_key


def _receive(sock: zmq.Socket, seconds: float) -> list[dict]:
    return _receive_each({"sock": sock}, seconds)["sock"]


def _receive_each(socks: dict[str, zmq.Socket], seconds: float) -> dict[str, list[dict]]:
    """What each of ``socks`` receives over the same ``seconds``, by name."""
    poller = zmq.Poller()
    for sock in socks.values():
        poller.register(sock, zmq.POLLIN)
    got, deadline = {who: [] for who in socks}, time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = dict(poller.poll(50))
        for who, sock in socks.items():
            if sock in ready:
                got[who].append(events.decode(sock.recv_multipart()[1]))
    return got


def test_curve_publisher_reaches_only_clients_with_keys(tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys, ["allowed", "other"])
    (keys / "clients" / "other.key").unlink()  # made, but not let in
    guard = Guard(str(keys / "server.key_secret"), str(keys / "clients"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, context=guard.context)
    subs = {}
    for who, client_key in (("plain", None), ("allowed", keys / "allowed.key_secret"),
                            ("other", keys / "other.key_secret"), ("throwaway", None)):
        ctx = zmq.Context()
        if who != "plain":
            client_context(str(keys / "server.key"), client_key and str(client_key), ctx)
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        subs[who] = (ctx, sock)
    try:
        time.sleep(0.5)  # handshakes (or their refusal)
        for seq in range(20):
            pub.publish(events.window_event("s", seq, seq, seq + 3, 1.7e9, [1 / 11] * 11, CLASSES, [], 1.0, "m", False))
            pub.poll_subscriptions()
        got = _receive_each({who: sock for who, (_, sock) in subs.items()}, 1.0)
        assert [e["seq"] for e in got["allowed"]] == list(range(20))
        assert got["plain"] == got["other"] == got["throwaway"] == []
    finally:
        for ctx, sock in subs.values():
            sock.close()
            ctx.term()
        pub.socket.close(0)
        guard.close()
        guard.context.term()


def test_bad_key_files_are_one_line_errors(tmp_path):
    make_keys(tmp_path / "k", ["client"])
    with pytest.raises(CurveKeyError, match="holds only a public key"):
        Guard(str(tmp_path / "k" / "server.key"))
    (tmp_path / "junk.key_secret").write_text("hello")
    with pytest.raises(CurveKeyError, match="not a CurveZMQ certificate"):
        Guard(str(tmp_path / "junk.key_secret"))
    with pytest.raises(CurveKeyError, match="no client public certificates"):
        Guard(str(tmp_path / "k" / "server.key_secret"), str(tmp_path))
    with pytest.raises(CurveKeyError, match="no such certificate"):
        client_context(str(tmp_path / "missing.key"), None, zmq.Context())


def _subscriber(endpoint: str, server_key: Path, client_key: Path | None) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    client_context(str(server_key), client_key and str(client_key), ctx)
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return ctx, sock


def test_a_refused_client_is_logged_and_a_client_added_later_gets_in_without_a_restart(tmp_path, caplog, capsys):
    keys = tmp_path / "keys"
    make_keys(keys, ["first"])
    server_secret = (keys / "server.key_secret").read_bytes()
    guard = Guard(str(keys / "server.key_secret"), str(keys / "clients"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, context=guard.context)
    made = []
    try:
        with caplog.at_level("WARNING", logger="instrumentd.daemon.security"):
            stranger = zmq.curve_keypair()
            (tmp_path / "stranger.key_secret").write_text(
                f'curve\n    public-key = "{stranger[0].decode()}"\n    secret-key = "{stranger[1].decode()}"\n')
            made.append(_subscriber(endpoint, keys / "server.key", tmp_path / "stranger.key_secret"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "refused a client" not in caplog.text:
                time.sleep(0.05)
        line = next(r.getMessage() for r in caplog.records if "refused a client" in r.getMessage())
        assert "127.0.0.1" in line and stranger[0].decode()[:8] in line and "Unknown key" in line
        # one line per address and key a minute, however often the client retries
        time.sleep(1.0)
        assert sum("refused a client" in r.getMessage() for r in caplog.records) == 1

        assert main(["keys", "add-client", "late", "--dir", str(keys)]) == 0
        capsys.readouterr()
        assert (keys / "server.key_secret").read_bytes() == server_secret
        assert stat.S_IMODE((keys / "late.key_secret").stat().st_mode) == 0o600
        assert (keys / "clients" / "late.key").is_file()
        made.append(_subscriber(endpoint, keys / "server.key", keys / "late.key_secret"))
        time.sleep(0.5)
        for seq in range(5):
            pub.publish(events.window_event("s", seq, seq, seq + 3, 1.7e9, [1 / 11] * 11, CLASSES, [], 1.0, "m", False))
            pub.poll_subscriptions()
        assert [e["seq"] for e in _receive(made[1][1], 1.0)] == list(range(5))
        assert _receive(made[0][1], 0.2) == []
        assert main(["keys", "add-client", "late", "--dir", str(keys)]) == 2
        one_line_error(capsys.readouterr().err, "keys", "late.key", "never overwritten")
        assert main(["keys", "add-client", "x", "--dir", str(tmp_path / "empty")]) == 2
        one_line_error(capsys.readouterr().err, "keys", "no server.key")
    finally:
        for ctx, sock in made:
            sock.close()
            ctx.term()
        pub.socket.close(0)
        guard.close()
        guard.context.term()


@pytest.mark.parametrize("client", ["plain", "wrong server key"])
def test_a_client_that_fails_the_handshake_before_the_key_check_is_logged(client, tmp_path, caplog):
    keys = tmp_path / "keys"
    make_keys(keys, ["first"])
    guard = Guard(str(keys / "server.key_secret"), str(keys / "clients"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(endpoint, context=guard.context)
    guard.watch(pub.socket, endpoint)
    if client == "plain":
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
    else:
        impostor = zmq.curve_keypair()
        (tmp_path / "impostor.key").write_text(f'curve\n    public-key = "{impostor[0].decode()}"\n')
        ctx, sock = _subscriber(endpoint, tmp_path / "impostor.key", keys / "first.key_secret")
    try:
        with caplog.at_level("WARNING", logger="instrumentd.daemon.security"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and "handshake failed" not in caplog.text:
                time.sleep(0.05)
        lines = [r.getMessage() for r in caplog.records if "handshake failed" in r.getMessage()]
        assert len(lines) == 1 and endpoint in lines[0] and "--server-key" in lines[0]
    finally:
        sock.close()
        ctx.term()
        pub.socket.close(0)
        guard.close()
        guard.context.term()
