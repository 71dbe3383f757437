"""``instrumentd web``: a live page of the daemons' streams, served over HTTP with server-sent events.

Per stream the page shows the current instrument and its confidence, the 11 probabilities of the
last minutes as a heat map, the segments as a labelled timeline with a time axis, and the source's
state and level. Its files (``clients/web/``: HTML, JavaScript, CSS) ship with the package and load
nothing from the internet.

Server: aiohttp, one small, well-kept asyncio HTTP server that serves both the static files and a
streaming response, so the page needs no second process and no framework. Transport: server-sent
events (``GET /events``): the data flows one way, from the daemons to the page; the browser's
``EventSource`` reconnects by itself, and it is plain HTTP, so proxies pass it.

Events reach the page through :class:`Feed`: a thread subscribes to the daemons with the shared
subscriber code (:mod:`instrumentd.clients.subscribe`), fills each stream's last minutes from the
replay endpoint the first time it sees the stream (and any later seq gap), and hands events to the
asyncio loop. A page that opens gets the kept history first (one ``snapshot`` message), then each
event as it comes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import threading
from importlib import resources
from typing import Any

from .subscribe import DEFAULT_REPLAY, add_connect_argument

DEFAULT_LISTEN = "127.0.0.1:8080"
HISTORY_S = 300.0  # seconds of windows the page shows and a newly opened page gets
REPLAY_EVENTS = 3000  # events asked from replay when a stream is first seen: 5 minutes at the shortest hop
SEGMENTS_KEPT = 500  # segment events kept per stream
LISTENER_QUEUE = 1000  # events a slow page may fall behind before it is cut off (its browser reconnects)
PING_S = 15.0  # seconds between SSE comments that keep idle connections open through proxies


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "web",
        help="a live web page of the daemons' streams (heat map, segment timeline, levels)",
        description=(
            "Subscribe to one or more running `instrumentd serve` daemons and serve a live page: per "
            "stream the current instrument and confidence, the probabilities of the last minutes as a "
            "heat map, the segments on a timeline, the source state and level. The page is filled from "
            "the daemons' replay endpoints when it opens and updated with server-sent events. Nothing is "
            "loaded from the internet. Example: instrumentd web --connect tcp://127.0.0.1:5555, then "
            f"open http://{DEFAULT_LISTEN}/"
        ),
    )
    add_connect_argument(p)
    p.add_argument("--replay", action="append", metavar="ENDPOINT",
                   help=f"replay endpoint to fill the last minutes from, repeatable (default {DEFAULT_REPLAY}; "
                        "'' = none)")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where the page is served (default {DEFAULT_LISTEN}; another machine's address needs "
                        "--insecure)")
    p.add_argument("--history", type=float, default=HISTORY_S, metavar="SECONDS",
                   help=f"seconds of probabilities and segments on the page (default {HISTORY_S:g})")
    p.add_argument("--insecure", action="store_true",
                   help="serve the page, in clear text and without a login, to other machines")
    p.set_defaults(run=run)


class Feed:
    """The recent events of every stream, and the pages listening for new ones.

    Parameters
    ----------
    history_s : seconds of window events kept per stream (by ``wall_time``)
    """

    def __init__(self, history_s: float):
        self.history_s = history_s
        self.windows: dict[str, collections.deque[dict]] = {}
        self.segments: dict[str, collections.deque[dict]] = {}
        self.status: dict[str, Any] | None = None
        self.listeners: set[asyncio.Queue] = set()

    def add(self, event: dict[str, Any]) -> None:
        """Keep ``event`` and pass it to every listening page (call in the event loop's thread)."""
        kind = event["type"]
        if kind == "status":
            self.status = event
        elif kind == "window":
            kept = self.windows.setdefault(event["stream"], collections.deque())
            kept.append(event)
            newest = _epoch(event["wall_time"])
            while kept and newest - _epoch(kept[0]["wall_time"]) > self.history_s:
                kept.popleft()
        elif kind == "segment":
            self.segments.setdefault(event["stream"], collections.deque(maxlen=SEGMENTS_KEPT)).append(event)
        for queue in list(self.listeners):
            if queue.qsize() < LISTENER_QUEUE:
                queue.put_nowait(event)
            else:
                self.listeners.discard(queue)
                queue.put_nowait(None)  # the last free place: the reader's signal to end the response

    def snapshot(self) -> dict[str, Any]:
        """What a page that opens now gets first: ``{"windows": {...}, "segments": {...}, "status": ...}``."""
        return {"history_s": self.history_s,
                "windows": {s: list(w) for s, w in self.windows.items()},
                "segments": {s: list(g) for s, g in self.segments.items()},
                "status": self.status}

    def listen(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(LISTENER_QUEUE + 1)
        self.listeners.add(queue)
        return queue


def _epoch(wall_time: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(wall_time).timestamp()


def subscribe(endpoints: list[str], replay: list[str], hand_over, stop: threading.Event) -> None:
    """Receive the daemons' events until ``stop`` is set; ``hand_over(event)`` each one, in seq order per
    stream. A stream seen for the first time (in an event, or in a status heartbeat) has its last
    :data:`REPLAY_EVENTS` events handed over from replay first; a later gap is filled the same way."""
    from .subscribe import TOPICS, Gaps, Replayer, fill, receive, sub_socket, topic_prefixes

    sock = sub_socket(endpoints, topic_prefixes(list(TOPICS), None))
    replayer = Replayer(replay) if replay else None
    gaps = Gaps()

    def catch_up(stream: str, upto: int) -> None:
        """Hand over the events of ``stream`` before seq ``upto`` not handed over yet: its last minutes
        when the stream is new here (if there is a replay endpoint), a gap otherwise (reported if unfilled)."""
        known = stream in gaps.next_seq
        first = gaps.next_seq[stream] if known else max(0, upto - REPLAY_EVENTS)
        if upto > first and (known or replayer is not None):
            for old in fill(replayer, stream, (first, upto), "web"):
                hand_over(old)
        gaps.next_seq[stream] = max(upto, first)

    try:
        while not stop.is_set():
            event = receive(sock, 0.25, "web")
            if event is None:
                continue
            if event["type"] == "status":
                for stream, health in event["streams"].items():
                    if stream not in gaps.next_seq:
                        catch_up(stream, health["seq"] + 1)
            else:
                catch_up(event["stream"], event["seq"])
                if gaps.seen(event) == "old":
                    continue
            hand_over(event)
    finally:
        sock.close(linger=0)


def build_app(feed: Feed) -> Any:
    """The aiohttp application: ``/`` (the page), ``/static/*``, ``/classes.json`` and ``/events`` (SSE)."""
    from aiohttp import web

    from instrumentd.model.classes import CLASSES, NAMES

    static = resources.files("instrumentd.clients") / "web"

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=(static / "index.html").read_bytes(), content_type="text/html", charset="utf-8")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"js": "text/javascript", "css": "text/css"}
        kind = name.rpartition(".")[2]
        path = static / name
        if kind not in types or "/" in name or not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type=types[kind], charset="utf-8")

    async def classes(request: web.Request) -> web.Response:
        return web.json_response({"classes": list(CLASSES), "names": NAMES})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue = feed.listen()
        try:
            await response.write(_sse("snapshot", feed.snapshot()))
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), PING_S)
                except asyncio.TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                if event is None:
                    break
                await response.write(_sse(event["type"], event))
        except ConnectionResetError:  # the page was closed
            pass
        finally:
            feed.listeners.discard(queue)
        return response

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/classes.json", classes)
    app.router.add_get("/events", events)
    return app


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from instrumentd.daemon.security import require_local_listen
    from instrumentd.pipeline.errors import ParameterError

    from .subscribe import check_endpoint, connect_endpoints

    host, port = require_local_listen(args.listen, "--listen", args.insecure)
    if not args.history > 0:
        raise ParameterError(f"--history must be positive seconds, got {args.history}")
    endpoints = connect_endpoints(args)
    replay = [check_endpoint(e, "--replay") for e in (args.replay or [DEFAULT_REPLAY]) if e]
    feed = Feed(args.history)
    stop = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        thread = threading.Thread(target=subscribe, name="web-subscribe", daemon=True,
                                  args=(endpoints, replay, lambda e: loop.call_soon_threadsafe(feed.add, e), stop))
        thread.start()
        runner = web.AppRunner(build_app(feed), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, shutdown_timeout=0.5).start()
        except OSError as exc:
            raise ParameterError(f"--listen {args.listen!r}: cannot listen there ({exc.strerror})") from None
        print(f"instrumentd web: http://{args.listen}/ (events from {', '.join(endpoints)})", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            stop.set()
            await runner.cleanup()

    asyncio.run(main())
    return 0
