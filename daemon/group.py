"""``serve --processes K``: the sources spread over K daemon processes, joined on the group's endpoints.

One daemon steps its streams one after another under one interpreter lock, so with hundreds of
streams its one core is the limit (docs/SCALING.md). A group's parent process starts K children,
each an ``instrumentd serve`` with every K-th source, and joins them:

- events: each child publishes on its own ``ipc://`` endpoint in a private folder; the parent runs
  ``instrumentd proxy``'s :class:`~instrumentd.daemon.proxy.EventProxy` from those to ``pub``, with
  the group's CurveZMQ settings;
- the event log: the children share ``log_dir`` (a folder per stream, so a stream's ``seq`` goes on
  across restarts whichever child serves it); the parent answers ``replay`` from that folder;
- torch's CPU threads: each child runs torch on ``cpu_threads`` threads (default 1), as any daemon
  does, so K processes do not each spin on every core and starve one another.

A child that fails is started again after a pause that doubles up to :data:`MAX_BACKOFF_S` (its
streams resume from their logs); the others keep running. A child whose sources have all ended
exits 0 and stays down; the group ends when every child has. SIGINT, SIGTERM or SIGHUP stops the
children (each finishes its windows, flushes its log and exits 0), then the proxy; a second Ctrl-C
kills them. The parent holds the log folder's lock for the group (the children inherit its
descriptor) and talks to systemd (READY, WATCHDOG); the children do not.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instrumentd.pipeline.errors import ParameterError

from .config import ENV_PREFIX, Config
from .signals import Signals

log = logging.getLogger("instrumentd.daemon.group")

FIRST_BACKOFF_S = 1.0  # pause before a failed child is started again; doubles per failure in a row
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0  # a child that ran this long before it failed starts again after the first pause
STOP_TIMEOUT_S = 60.0  # seconds a child may take to finish after SIGTERM before it is killed
POLL_S = 0.1  # the parent's loop: replay requests, children's exits, signals


@dataclasses.dataclass
class _Child:
    """One daemon of the group: its configuration file, its process and its restarts."""

    index: int
    config: Path
    pub: str  # where it publishes its events
    streams: list[str]
    proc: subprocess.Popen | None = None
    done: bool = False  # exited 0: its sources have ended
    backoff: float = FIRST_BACKOFF_S
    started: float = 0.0  # time.monotonic() of the last start
    restart_at: float | None = None  # time.monotonic() at which a failed child starts again

    def start(self, env: dict[str, str], keep_fds: tuple[int, ...] = ()) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "instrumentd", "serve", "--config", str(self.config)],
                                     env=env, pass_fds=keep_fds)
        log.info("daemon %d (pid %d): %s", self.index, self.proc.pid, ", ".join(self.streams))


def child_configs(config: Config, folder: Path) -> list[tuple[Config, list[str]]]:
    """The K children's configurations and stream names: every K-th source, its own PUB endpoint in
    ``folder``, no replay endpoint and no CurveZMQ (the parent serves both), the shared log folder."""
    k = config.processes
    sources = config.sources
    if k > len(sources):
        raise ParameterError(f"processes = {k} but only {len(sources)} source(s): at most one process per source")
    specs = config.source_specs()
    out = []
    for i in range(k):
        child = dataclasses.replace(config, sources=sources[i::k], pub=f"ipc://{folder}/pub-{i}", replay="",
                                    processes=1, curve_key="", curve_clients="", insecure=False)
        out.append((child.validate(), [s.name for s in specs[i::k]]))
    return out


def run_group(config: Config) -> int:
    """Run the group until every child has ended or a signal came; returns the exit code (0)."""
    import zmq

    from .eventlog import lock_folder, make_folder
    from .security import Guard

    with Signals() as signals:
        guard = Guard(config.curve_key, config.curve_clients, zmq.Context())
        lock = None
        if config.log_dir:
            try:
                lock = lock_folder(make_folder(config.log_dir, private=guard.secured))
            except BaseException:
                guard.close()
                raise
        try:
            return _run(config, guard, signals, lock)
        finally:
            if lock is not None:
                lock.close()


def _run(config: Config, guard, signals: Signals, lock) -> int:
    """The group's life once its log folder is locked: children, proxy and replay up, watched, stopped."""
    import zmq

    from .eventlog import LOCK_FD_ENV
    from .proxy import EventProxy
    from .replay import ReplayServer
    from .service import Notifier

    notifier = Notifier()
    folder = Path(tempfile.mkdtemp(prefix="instrumentd-group-"))
    events = replay = None
    children: list[_Child] = []
    keep = (lock.fd,) if lock is not None else ()
    try:
        for i, (child, streams) in enumerate(child_configs(config, folder)):
            path = folder / f"daemon-{i}.toml"
            path.write_text(child.to_toml())
            children.append(_Child(i, path, child.pub, streams))
        events = EventProxy([c.pub for c in children], config.pub, guard.context, zmq.Context())
        if config.replay and config.log_dir:
            replay = ReplayServer(config.replay, config.log_dir, guard.context)
            replay.start()
        events.start()
        env = _child_env()
        if lock is not None:
            env[LOCK_FD_ENV] = str(lock.fd)
        for c in children:
            c.start(env, keep)
        log.info("group of %d daemons: events on %s%s%s", len(children), config.pub,
                 f", replay on {config.replay}" if replay else "", " (CurveZMQ)" if guard.secured else "")
        notifier.ready(f"serving with {len(children)} daemons")
        while not signals.should_exit and not all(c.done for c in children):
            _watch(children, env, keep)
            notifier.tick()
            signals.stop.wait(POLL_S)
        if signals.should_exit:
            log.info("%s: stopping the daemons", signals.received)
    finally:
        notifier.stopping()
        _stop(children, signals)
        if replay is not None:
            replay.close()
        if events is not None:
            events.close()
        guard.close()
        shutil.rmtree(folder, ignore_errors=True)
    log.info("group stopped")
    return 0


def _watch(children: list[_Child], env: dict[str, str], keep_fds: tuple[int, ...]) -> None:
    """Note children that exited; start failed ones again once their pause is over."""
    now = time.monotonic()
    for c in children:
        if c.proc is not None and (rc := c.proc.poll()) is not None:
            c.proc = None
            if rc == 0:
                c.done = True
                log.info("daemon %d: its sources have ended", c.index)
                continue
            if now - c.started >= STABLE_S:
                c.backoff = FIRST_BACKOFF_S
            c.restart_at = now + c.backoff
            log.error("daemon %d (%s) exited with %d; starting it again in %g s", c.index, ", ".join(c.streams), rc,
                      c.backoff)
            c.backoff = min(MAX_BACKOFF_S, 2 * c.backoff)
        elif c.proc is None and c.restart_at is not None and now >= c.restart_at:
            c.restart_at = None
            c.start(env, keep_fds)


def _stop(children: list[_Child], signals: Signals) -> None:
    """SIGTERM every running child, wait for them to finish their windows; kill those that do not,
    and all of them after a second Ctrl-C."""
    running = [c.proc for c in children if c.proc is not None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in running:
        while p.poll() is None and time.monotonic() < deadline and not signals.force_exit:
            time.sleep(POLL_S)
        if p.poll() is None:
            log.error("daemon pid %d %s; killed", p.pid,
                      "not waited for (second Ctrl-C)" if signals.force_exit else f"did not stop within {STOP_TIMEOUT_S:g} s")
            p.kill()
            p.wait()


def _child_env() -> dict[str, str]:
    """The children's environment: without ``INSTRUMENTD_*`` settings (the parent applied them; its
    configuration files carry them) and systemd's (the parent talks to systemd)."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(ENV_PREFIX) and name not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
