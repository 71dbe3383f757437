"""Locked-down defaults for the daemon's ZeroMQ endpoints: loopback, or CurveZMQ, or an explicit ``--insecure``.

Events say what plays where, and replay serves the whole log: neither leaves the machine in the
clear by accident. An endpoint is *local* when it is ``ipc://``, ``inproc://`` or TCP on a loopback
address (``127.0.0.0/8``, ``::1``, ``localhost``). A non-local ``pub`` or ``replay`` endpoint is
refused unless the daemon has a CurveZMQ key (``curve_key``: its secret certificate made by
``instrumentd keys``) or ``insecure`` is set.

With a key every daemon socket is a CurveZMQ server: traffic is encrypted and only clients that
know the daemon's public key get through; with ``curve_clients`` (a folder of client public
certificates) only those clients do. Clients give ``--server-key`` (the daemon's public
certificate) and ``--client-key`` (their own secret certificate): :func:`client_context`.

Every CurveZMQ handshake that reaches the key check goes through a ZAP handler
(:class:`LoggingAuthenticator`): a client whose key is not listed is logged as a warning with its
address and key id (the first 8 characters of its Z85 public key), once a minute per address and key.
A client that fails the handshake before that check (no CurveZMQ at all, or the wrong server key)
never reaches ZAP: :meth:`Guard.watch` logs those from the socket's monitor, once a minute per
endpoint and cause (ZeroMQ does not tell such a peer's address).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from instrumentd.pipeline.errors import InstrumentdError, ParameterError

log = logging.getLogger("instrumentd.daemon.security")

__all__ = [
    "CurveKeyError", "Guard", "client_context", "is_local", "load_keypair", "parse_listen", "require_local_listen",
    "require_protection",
]

DENIAL_LOG_INTERVAL_S = 60.0  # a refused client is logged again after this long
_TCP = re.compile(r"tcp://(\[[0-9A-Fa-f:.]*\]|[^:/;\[\]]*):(\d+|\*)")


class CurveKeyError(InstrumentdError):
    """A CurveZMQ certificate that is missing, unreadable, or public where a secret one is needed."""


def is_local(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and TCP on a loopback address; False for anything else
    (``*``, ``0.0.0.0``, an interface name, a host name other than ``localhost``)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    match = _TCP.fullmatch(endpoint)
    if not match:
        return False
    host = match.group(1).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_protection(name: str, endpoint: str, curve_key: str, insecure: bool) -> None:
    """Raise ParameterError for a non-local endpoint without a CurveZMQ key or ``insecure``."""
    if not endpoint or is_local(endpoint) or curve_key or insecure:
        return
    raise ParameterError(
        f"{name} endpoint {endpoint!r} is reachable from other machines: give the daemon a CurveZMQ key "
        f"(`instrumentd keys DIR`, then --curve-key DIR/server.key_secret) or accept clear text with --insecure"
    )


def parse_listen(text: str, flag: str = "metrics") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> ``(host, port)``; ParameterError naming a bad one."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParameterError(f"{flag} {text!r} is not HOST:PORT (e.g. 127.0.0.1:9108)")
    return host, int(port)


def require_local_listen(text: str, flag: str, insecure: bool) -> tuple[str, int]:
    """:func:`parse_listen`, refusing an address other machines can reach unless ``insecure``:
    plain HTTP carries no key, so loopback is the default for it as for every endpoint."""
    host, port = parse_listen(text, flag)
    if not is_local(f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}") and not insecure:
        raise ParameterError(f"{flag} {text!r} is reachable from other machines over plain HTTP: listen on "
                             "127.0.0.1 (and reach it through a tunnel or proxy) or accept it with --insecure")
    return host, port


def load_keypair(path: str | Path, what: str, secret: bool = True) -> tuple[bytes, bytes | None]:
    """``(public, secret)`` Z85 keys from a zmq.auth certificate file; ``secret=True`` requires the secret one."""
    import zmq.auth

    path = Path(path)
    if not path.is_file():
        raise CurveKeyError(f"{what} {path}: no such certificate file (make one with `instrumentd keys DIR`)")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CurveKeyError(f"{what} {path}: not a CurveZMQ certificate ({exc})") from None
    if secret and not secret_key:
        raise CurveKeyError(f"{what} {path}: holds only a public key; give the .key_secret file")
    return public, secret_key


def _authenticator_class() -> type:
    from zmq.auth.thread import ThreadAuthenticator
    from zmq.utils import z85

    class LoggingAuthenticator(ThreadAuthenticator):
        """pyzmq's ZAP handler, with every refused CurveZMQ client logged (address and key id)."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.denied = 0
            self._peer = ""
            self._logged: dict[tuple[str, str], float] = {}

        async def handle_zap_message(self, msg: list[bytes]) -> None:
            self._peer = msg[3].decode(errors="replace") if len(msg) > 3 else "?"
            await super().handle_zap_message(msg)

        async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
            allowed, reason = await super()._authenticate_curve(domain, client_key)
            if not allowed:
                self.denied += 1
                key_id = z85.encode(client_key).decode()[:8]
                now = time.monotonic()
                if now - self._logged.get((self._peer, key_id), -DENIAL_LOG_INTERVAL_S) >= DENIAL_LOG_INTERVAL_S:
                    self._logged[(self._peer, key_id)] = now
                    log.warning("CurveZMQ: refused a client from %s with key %s... (%s; %d refused so far): "
                                "add its public certificate to the curve_clients folder to let it in",
                                self._peer, key_id, reason.decode(errors="replace"), self.denied)
            return allowed, reason

    return LoggingAuthenticator


class _ClientFolder:
    """The public keys of the certificates in ``folder``, read again whenever the folder changes,
    so a client added with ``instrumentd keys add-client`` gets in without a restart."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._stamp = -1
        self._keys: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        import zmq.auth

        stamp = self.folder.stat().st_mtime_ns
        if stamp != self._stamp:
            self._keys = set(zmq.auth.load_certificates(self.folder))
            self._stamp = stamp
            log.info("CurveZMQ: %d client certificate(s) allowed from %s", len(self._keys), self.folder)
        return key in self._keys


class Guard:
    """The ZeroMQ context for the daemon's public sockets, with CurveZMQ when ``curve_key`` is set.

    Parameters
    ----------
    curve_key : the daemon's secret certificate file, "" for none (plain ZeroMQ)
    curve_clients : folder of allowed clients' public certificates, "" to allow any client that
        knows the daemon's public key
    context : the context to use when there is no key (default: the process's shared one)
    """

    def __init__(self, curve_key: str = "", curve_clients: str = "", context: Any = None):
        import zmq

        self.auth = None
        self.secured = bool(curve_key)
        self._watchers: list[threading.Thread] = []
        self._stop = threading.Event()
        if not curve_key:
            self.context = context or zmq.Context.instance()
            return
        public, secret = load_keypair(curve_key, "curve_key")
        self.context = zmq.Context()
        if curve_clients:
            folder = Path(curve_clients)
            allowed = sorted(folder.glob("*.key")) if folder.is_dir() else []
            if not allowed:
                raise CurveKeyError(f"curve_clients {folder}: no client public certificates (*.key) there")
            for cert in allowed:
                load_keypair(cert, "curve_clients", secret=False)
            # the authenticator's own inproc sockets are made before the CurveZMQ defaults below
            self.auth = _authenticator_class()(self.context, log=log.getChild("zap"))
            self.auth.start()
            self.auth.configure_curve_callback(domain="*", credentials_provider=_ClientFolder(folder))
        self.context.setsockopt(zmq.CURVE_SERVER, 1)
        self.context.setsockopt(zmq.CURVE_PUBLICKEY, public)
        self.context.setsockopt(zmq.CURVE_SECRETKEY, secret)

    def watch(self, socket: Any, endpoint: str) -> None:
        """Log the CurveZMQ handshakes that fail on ``socket`` (bound at ``endpoint``) before the key check.

        Call it from the thread that owns ``socket``; a thread of the guard's reads the monitor.
        """
        import zmq

        if not self.secured:
            return
        kinds = {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the peer is not a CurveZMQ client of this key",
                 zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "a protocol error (no CurveZMQ, or the wrong server key)",
                 zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused"}
        monitor = socket.get_monitor_socket(sum(kinds))
        thread = threading.Thread(target=self._log_failures, args=(monitor, endpoint, kinds),
                                  name="curve-monitor", daemon=True)
        thread.start()
        self._watchers.append(thread)

    def _log_failures(self, monitor: Any, endpoint: str, kinds: dict[int, str]) -> None:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        last: dict[int, float] = {}
        try:
            while not self._stop.is_set():
                if not monitor.poll(200):
                    continue
                event = recv_monitor_message(monitor)["event"]
                now = time.monotonic()
                if event in kinds and now - last.get(event, -DENIAL_LOG_INTERVAL_S) >= DENIAL_LOG_INTERVAL_S:
                    last[event] = now
                    log.warning("CurveZMQ handshake failed on %s: %s (a client needs --server-key with the "
                                "daemon's public certificate, and --client-key when clients are listed)",
                                endpoint, kinds[event])
        except zmq.ZMQError:
            pass  # the socket was closed under the monitor: the daemon is stopping
        finally:
            monitor.close(linger=0)

    def close(self) -> None:
        """Stop the authenticator and the monitors; the context ends with its sockets."""
        self._stop.set()
        for thread in self._watchers:
            thread.join(timeout=1.0)
        self._watchers.clear()
        if self.auth is not None:
            self.auth.stop()
            self.auth = None


def client_context(server_key: str | None, client_key: str | None, context: Any = None) -> Any:
    """Make every socket that ``context`` (default: the process's shared one) creates from now on a
    CurveZMQ client of the daemon whose public certificate is ``server_key``; returns the context.

    ``client_key`` is this client's secret certificate; without it a throwaway key pair is used,
    which a daemon that lists its ``curve_clients`` will not let in. Nothing changes when
    ``server_key`` is None.
    """
    import zmq

    context = context or zmq.Context.instance()
    if not server_key:
        if client_key:
            raise ParameterError("--client-key needs --server-key (the daemon's public certificate, server.key)")
        return context
    server_public, _ = load_keypair(server_key, "--server-key", secret=False)
    if client_key:
        public, secret = load_keypair(client_key, "--client-key")
    else:
        public, secret = zmq.curve_keypair()
    context.setsockopt(zmq.CURVE_SERVERKEY, server_public)
    context.setsockopt(zmq.CURVE_PUBLICKEY, public)
    context.setsockopt(zmq.CURVE_SECRETKEY, secret)
    return context
