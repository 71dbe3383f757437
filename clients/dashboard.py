"""``instrumentd dashboard``: a live terminal screen of one or more daemons, one panel per stream.

A panel shows the predominant instrument(s) now, the 11 class probabilities as bars, a timeline
of recent windows coloured by their top class over a time axis, the recent segment log, and the
stream's health from the daemon's heartbeats (level, windows, drops, queue, latency p50/p99); a
stream whose source ended or failed says so. A header line per daemon says whether it answers.
When a daemon first answers, its recent windows and segments are fetched from its replay
endpoint, so the timeline and the log start full. The screen fits 80x24 and gives panels more
lines (all 11 bars, a longer segment log) and more columns as the terminal grows.

:class:`Board` holds what the events said; :func:`render` draws a board at a given size (a pure
function, so the layout is testable without a terminal); :func:`run` is the loop: ZeroMQ
sockets and the keyboard polled together, the screen redrawn a few times a second.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time
from typing import Any

COLOURS = {  # one per class, distinct on 256-colour terminals
    "cel": "dark_orange3", "cla": "turquoise2", "flu": "sky_blue1", "gac": "khaki3", "gel": "red1",
    "org": "medium_purple1", "pia": "grey93", "sax": "gold1", "tru": "orange_red1", "vio": "green3",
    "voi": "hot_pink",
}
STALE_S = 12.0  # seconds without a message before a daemon counts as not answering (heartbeat: 5 s)
FPS = 5  # screen redraws per second, at most
HISTORY = 400  # windows kept per stream for the timeline
SEGMENT_LOG = 40  # segment events kept per stream
PANEL_WIDTH = 60  # columns a panel needs at least; wider terminals get more panels side by side
BLOCKS = " ▏▎▍▌▋▊▉█"  # eighths of a cell, for bars finer than a character
TICK_CELLS = 16  # timeline cells between two labels of its time axis
ENDED = ("ended", "failed")  # source states after which a stream makes no more windows
DRAIN = 10000  # messages read from one daemon between redraws, at most


# ---- what the events said -------------------------------------------------------------------------

@dataclasses.dataclass
class StreamView:
    """One stream: its latest window, recent ``(top, predominant, t_end)``, segment log, last heartbeat
    entry and the state of its last ``source`` lifecycle event."""

    name: str
    endpoint: str
    window: dict[str, Any] | None = None
    history: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    segments: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=SEGMENT_LOG))
    status: dict[str, Any] | None = None
    lifecycle: str | None = None
    next_seq: int = 0  # events with a smaller seq were had already (live or replayed)

    @property
    def state(self) -> str:
        """The source's state: from its lifecycle events, else from the heartbeat ("" before either)."""
        return self.lifecycle or (self.status or {}).get("state", "")


@dataclasses.dataclass
class DaemonView:
    """One endpoint: when it last said anything (monotonic seconds) and its last heartbeat."""

    endpoint: str
    last_seen: float | None = None
    status: dict[str, Any] | None = None


class Board:
    """Everything on screen, updated event by event."""

    def __init__(self, endpoints: list[str]):
        self.daemons = {e: DaemonView(e) for e in endpoints}
        self.streams: dict[tuple[str, str], StreamView] = {}  # (endpoint, stream name) -> view

    def apply(self, endpoint: str, event: dict[str, Any], now: float) -> None:
        """Take one decoded event that arrived from ``endpoint`` at monotonic time ``now``."""
        daemon = self.daemons[endpoint]
        daemon.last_seen = now
        if event["type"] == "status":
            daemon.status = event
            for name, st in event["streams"].items():
                self._stream(name, endpoint).status = st
            return
        self.take(endpoint, event)

    def take(self, endpoint: str, event: dict[str, Any]) -> None:
        """Take a window, segment or source event of one of ``endpoint``'s streams, live or replayed;
        one already had (by seq) is left out."""
        view = self._stream(event["stream"], endpoint)
        if "seq" in event:
            if event["seq"] < view.next_seq:
                return
            view.next_seq = event["seq"] + 1
        if event["type"] == "window":
            view.window = event
            view.history.append((event["top"], bool(event["labels"]), event["t_end"]))
        elif event["type"] == "segment":
            view.segments.append(event)
        elif event["type"] == "source":
            view.lifecycle = event["state"]

    def _stream(self, name: str, endpoint: str) -> StreamView:
        view = self.streams.get((endpoint, name))
        if view is None:
            view = self.streams[endpoint, name] = StreamView(name, endpoint)
        return view

    def answering(self, endpoint: str, now: float) -> bool:
        seen = self.daemons[endpoint].last_seen
        return seen is not None and now - seen < STALE_S


# ---- drawing ----------------------------------------------------------------------------------------

def render(board: Board, width: int, height: int, now: float) -> Any:
    """The whole screen for a terminal of ``width`` x ``height`` cells, as a rich renderable of exactly that height."""
    from rich.align import Align
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    header = [_daemon_line(board, d, now, width - (len(QUITS) if i == 0 else 0))
              for i, d in enumerate(board.daemons.values())][: max(1, height // 4)]
    if all(d.last_seen is None for d in board.daemons.values()) or not board.streams:
        msg = Text.assemble(("Waiting for daemon", "bold yellow"), " at ", ", ".join(board.daemons),
                            "\nreconnects by itself", justify="center")
        body_height = max(3, height - len(header))
        return Group(_with_quits(header, width), Panel(Align.center(msg, vertical="middle"), height=body_height))
    order = list(board.daemons)
    keys = sorted(board.streams, key=lambda key: (order.index(key[0]), key[1]))
    columns = max(1, min(len(keys), width // PANEL_WIDTH))
    rows_fit = max(1, (height - len(header)) // 5)  # a panel needs 5 lines at least
    shown = keys[: columns * rows_fit]
    rows = -(-len(shown) // columns)
    more = len(keys) - len(shown)
    free = height - len(header) - (1 if more else 0)
    panel_heights = [free // rows + (1 if r < free % rows else 0) for r in range(rows)]
    panel_width = width // columns
    grid = Table.grid(expand=True)
    for _ in range(columns):
        grid.add_column(ratio=1)
    for r in range(rows):
        cells = [_panel(board.streams[n], board, panel_width, panel_heights[r], now)
                 for n in shown[r * columns : (r + 1) * columns]]
        grid.add_row(*cells, *[""] * (columns - len(cells)))
    parts = [_with_quits(header, width), grid]
    if more:
        parts.append(Text(f"+{more} more stream(s): enlarge the terminal to see them", style="yellow"))
    return Group(*parts)


QUITS = "  q quits"  # said once, at the right of the first header line


def _with_quits(header: list[Any], width: int) -> Any:
    """The header lines, the first with "q quits" at its right end."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    first = Table.grid(expand=True)
    first.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    first.add_column(justify="right", no_wrap=True)
    first.add_row(header[0], Text(QUITS, "dim"))
    return Group(first, *header[1:])


def _daemon_line(board: Board, daemon: DaemonView, now: float, width: int) -> Any:
    from rich.text import Text

    line = Text(no_wrap=True, overflow="ellipsis")
    if board.answering(daemon.endpoint, now):
        line.append("● ", "green")
    elif daemon.last_seen is None:
        line.append("○ ", "yellow").append(daemon.endpoint).append("  waiting for daemon", "yellow")
        return line
    else:
        line.append("○ ", "red").append(daemon.endpoint)
        return line.append(f"  no answer for {now - daemon.last_seen:.0f} s, reconnecting", "red")
    line.append(daemon.endpoint)
    st = daemon.status
    if st:
        line.append(f"  {st['device']}  {st['model']}")
        if not st["trained"]:
            line.append(" UNTRAINED", "bold red")
        line.append(f"  up {_duration(st['uptime_s'])}  pub drops {st['publisher_drops']}")
    line.truncate(width, overflow="ellipsis")
    return line


def _panel(view: StreamView, board: Board, width: int, height: int, now: float) -> Any:
    """A stream's panel of exactly ``height`` lines: now, health, timeline, as many bars and log lines as fit."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    from instrumentd.model.classes import CLASSES, NAMES

    inner_w, inner_h = max(10, width - 4), max(1, height - 2)
    live = board.answering(view.endpoint, now)
    ended = view.state in ENDED
    w = view.window
    lines: list[Any] = [_now_line(w, NAMES, view.state if ended else None), *_health_lines(view.status, inner_w),
                        _timeline(view.history, inner_w), _axis(view.history, inner_w)]
    n_bars = min(len(CLASSES), max(0, inner_h - len(lines)))
    if w and n_bars:
        probs = w["probabilities"]
        order = CLASSES if n_bars == len(CLASSES) else sorted(CLASSES, key=lambda c: -probs[c])[:n_bars]
        lines += [_bar(c, probs[c], c in w["labels"], inner_w, NAMES) for c in order]
    lines += [_segment_line(e, NAMES) for e in list(view.segments)[::-1][: max(0, inner_h - len(lines))]]
    lines = lines[:inner_h] + [Text("")] * max(0, inner_h - len(lines))
    state = view.state
    where = f" @ {view.endpoint.split('://', 1)[-1]}" if len(board.daemons) > 1 else ""
    title = Text.assemble((view.name, "bold"), (where, "dim"),
                          (f"  {state}", "bold red" if state == "failed" else "bold" if ended else "") if state else "",
                          ("" if live else "  (stale)", "red"))
    border = "red" if not live or state == "failed" else "grey50" if ended else "blue"
    return Panel(Group(*lines), title=title, title_align="left", height=height, width=width, border_style=border)


def _now_line(w: dict[str, Any] | None, names: dict[str, str], ended: str | None = None) -> Any:
    """What is predominant now; for a stream whose source ended or failed (``ended``), what was last."""
    from rich.text import Text

    line = Text(no_wrap=True, overflow="ellipsis")
    if ended:
        line.append(ended.upper(), "bold red" if ended == "failed" else "bold").append(" · last ", "dim")
    else:
        line.append("now ", "dim")
    if w is None:
        return line.append("no window yet", "yellow")
    if w["labels"]:
        for i, c in enumerate(w["labels"]):
            line.append(", " if i else "").append(names[c], f"bold {COLOURS[c]}")
    else:
        line.append("none predominant", "yellow").append(f" (top {names[w['top']]} {w['probabilities'][w['top']]:.2f})")
    return line.append(f"  {w['t_end']:.1f} s", "dim")


def _health_lines(st: dict[str, Any] | None, width: int) -> list[Any]:
    """The heartbeat's figures, " · " between them, on as many lines of ``width`` as they need (one
    from about 75 columns on): nothing is cut off."""
    from rich.text import Text

    if st is None:
        return [Text("no heartbeat yet", "dim", no_wrap=True)]
    lat = st["latency_ms"]
    p50 = "-" if lat["p50"] is None else f"{lat['p50']:.0f}"
    p99 = "-" if lat["p99"] is None else f"{lat['p99']:.0f}"
    drops = st["drops"]
    level = "-" if st["level_db"] is None else f"{st['level_db']:.0f} dB"
    dropped = drops["windows"] or drops["audio_s"]
    parts = [Text(f"p50 {p50} p99 {p99} ms"),
             Text(f"drops {drops['windows']} ({drops['audio_s']:.1f} s)", "red" if dropped else ""),
             Text(f"windows {st['windows']}"), Text(f"queue {st['queue_s']:.2f} s"), Text(level)]
    lines = [Text(no_wrap=True, overflow="ellipsis")]
    for part in parts:
        if lines[-1].cell_len and lines[-1].cell_len + 3 + part.cell_len > width:
            lines.append(Text(no_wrap=True, overflow="ellipsis"))
        if lines[-1].cell_len:
            lines[-1].append(" · ")
        lines[-1].append_text(part)
    return lines


def _timeline(history: collections.deque, width: int) -> Any:
    """The last ``width - 9`` windows, oldest left: a block in the top class's colour; a dim half
    block where nothing was predominant."""
    from rich.text import Text

    line = Text(no_wrap=True).append("timeline ", "dim")
    cells = width - len("timeline ")
    recent = list(history)[-cells:]
    line.append(" " * (cells - len(recent)))
    for top, predominant, _ in recent:
        line.append("█" if predominant else "▄", COLOURS[top] if predominant else f"dim {COLOURS[top]}")
    return line


def _axis(history: collections.deque, width: int) -> Any:
    """The timeline's time axis: ``now`` under the newest window and, every :data:`TICK_CELLS` cells, a
    tick with how long before it that window ended (stream time, so a gap in the audio shows as a jump)."""
    from rich.text import Text

    cells = width - len("timeline ")
    recent = list(history)[-cells:]
    axis = [" "] * cells
    if recent:
        newest = recent[-1][2]
        free_until = cells - len("now")  # labels may not run into the ones to their right
        axis[free_until:] = "now"
        for k in range(TICK_CELLS, len(recent), TICK_CELLS):
            pos = cells - 1 - k
            label = "╵-" + _ago(newest - recent[-1 - k][2])
            if pos + len(label) < free_until:
                axis[pos : pos + len(label)] = label
                free_until = pos
    return Text(" " * len("timeline ") + "".join(axis), "dim", no_wrap=True)


def _ago(seconds: float) -> str:
    """``42s``, ``1m05s``, ``2h03m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _bar(cls: str, p: float, predominant: bool, width: int, names: dict[str, str]) -> Any:
    from rich.text import Text

    label = f"{'●' if predominant else ' '} {names[cls]:<15} "
    cells = max(1, width - len(label) - 5)
    eighths = int(round(p * cells * 8))
    full, part = divmod(eighths, 8)
    bar = "█" * full + (BLOCKS[part] if part else "")
    line = Text(label, f"bold {COLOURS[cls]}" if predominant else COLOURS[cls], no_wrap=True)
    return line.append(f"{bar:<{cells}}", COLOURS[cls]).append(f"{p:5.2f}")


def _segment_line(e: dict[str, Any], names: dict[str, str]) -> Any:
    from rich.text import Text

    clock = e["wall_time"][11:19]
    line = Text(no_wrap=True, overflow="ellipsis").append(f"{clock} ", "dim")
    if e["state"] == "start":
        return line.append("▶ ", "green").append(names[e["instrument"]], COLOURS[e["instrument"]]).append(
            f"  from {e['start']:.1f} s")
    line.append("■ ", "red").append(names[e["instrument"]], COLOURS[e["instrument"]])
    reason = f" ({e['reason']})" if e["reason"] != "change" else ""
    return line.append(f"  {e['start']:.1f}-{e['end']:.1f} s{reason}")


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# ---- the loop ---------------------------------------------------------------------------------------


def show(endpoints: list[str], replays: list[str]) -> None:
    """The live screen of the daemons at ``endpoints`` until q, Ctrl-C or SIGTERM; ``replays[i]`` (one per
    daemon, in the same order, or fewer) fills daemon ``i``'s timeline when it first answers."""
    import zmq
    from rich.console import Console
    from rich.live import Live

    from instrumentd.daemon.signals import Signals

    from .subscribe import Replayer, receive, sub_socket, topic_prefixes

    replayers = {e: Replayer([r]) for e, r in zip(endpoints, replays)}
    prefixes = topic_prefixes(["window", "segment", "source", "status"], None)
    sockets = {sub_socket([e], prefixes): e for e in endpoints}  # one per daemon: who said what
    poller = zmq.Poller()
    for sock in sockets:
        poller.register(sock, zmq.POLLIN)
    keys = _Keys()
    if keys.fd is not None:
        poller.register(keys.fd, zmq.POLLIN)
    board = Board(endpoints)
    console = Console()
    try:
        with Signals() as signals, keys, Live(console=console, screen=True, auto_refresh=False,
                                              redirect_stderr=False) as live:
            next_draw = 0.0
            while not signals.should_exit:
                ready = dict(poller.poll(1000 / FPS))
                now = time.monotonic()
                for sock, endpoint in sockets.items():
                    for _ in range(DRAIN if ready.get(sock) else 0):
                        event = receive(sock, 0, "dashboard")
                        if event is not None:
                            if endpoint in replayers and not backfill(board, endpoint, event, replayers[endpoint]):
                                del replayers[endpoint]  # no answer: not asked again for each new stream
                            board.apply(endpoint, event, now)
                        if not sock.poll(0):
                            break
                if keys.fd is not None and ready.get(keys.fd) and keys.quit_pressed():
                    break
                if now >= next_draw:
                    width, height = console.size
                    live.update(render(board, width, height, now), refresh=True)
                    next_draw = now + 1 / FPS
    finally:
        for sock in sockets:
            sock.close(linger=0)


def backfill(board: Board, endpoint: str, event: dict[str, Any], replayer: Any) -> bool:
    """Before ``event`` from ``endpoint`` goes on the board: the recent events of each stream it
    shows for the first time, from the daemon's replay endpoint (up to :data:`HISTORY`). False if
    the endpoint did not answer: those panels start empty, as without a replay endpoint."""
    from instrumentd.daemon.events import EventError

    if event["type"] == "status":
        upto = {name: st["seq"] + 1 for name, st in event["streams"].items()}
    elif "seq" in event:
        upto = {event["stream"]: event["seq"]}
    else:
        return True
    for name, seq in upto.items():
        if (endpoint, name) in board.streams or seq <= 0:
            continue
        try:
            for old in replayer.fetch(name, max(0, seq - HISTORY), seq):
                board.take(endpoint, old)
        except (TimeoutError, EventError):
            return False
    return True


class _Keys:
    """The terminal in cbreak mode (keys arrive one at a time, unechoed; Ctrl-C still interrupts) for the
    ``with`` block; restored afterwards. ``fd`` is None when stdin is not a terminal."""

    def __init__(self):
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self._saved: Any = None

    def __enter__(self) -> "_Keys":
        if self.fd is not None:
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def quit_pressed(self) -> bool:
        """Read what was typed (without blocking); True if it holds q or Q."""
        import os
        import select

        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:
                return True  # the terminal is gone
            data += chunk
        return b"q" in data.lower()
