"""The control server: one port for the dashboard, /healthz, /metrics and the moderators' WebSocket.

Plain HTTP GETs are answered during the WebSocket opening handshake (``process_request``); ``/ws``
upgrades. A console authenticates with the token (a first ``auth`` message, or an ``Authorization:
Bearer`` header or ``?token=`` query on the upgrade) and then sends commands, each answered by one
reply; after ``subscribe`` it also receives the hub's events. Nothing a client sends can stop the
server: a bad message gets an error reply, a failing command an ``internal`` error (logged).
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from broadcaster.control.backend import ShowControl
from broadcaster.control.hub import EventHub
from broadcaster.control.metrics import Metrics, snapshot
from broadcaster.control.mic_session import MicSession
from broadcaster.control.preview import PreviewSink
from broadcaster.control.session import Session, perform
from broadcaster.control.settings import ControlConfig, Token, is_loopback
from broadcaster.listen.listener import Listener
from broadcaster.stream.rtc.viewers import Viewers

log = logging.getLogger(__name__)
# websockets logs every HTTP GET at INFO and every header at DEBUG (a token included): keep it quiet
WIRE_LOG = logging.getLogger("broadcaster.control.wire")
WIRE_LOG.setLevel(logging.WARNING)

Health = Callable[[], Mapping[str, Mapping[str, Any]]]
StatsFn = Callable[[], Mapping[str, Any]]
DASHBOARD = Path(__file__).with_name("dashboard")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css",
}
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
        "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]


def response(
    status: http.HTTPStatus, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None
) -> Response:
    """A complete HTTP response (the connection closes after it)."""
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *(extra or []),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


class ControlServer:
    """Serves the console on ``cfg.host:cfg.port``; ``start`` / ``close`` (or ``async with``) bracket it."""

    def __init__(
        self,
        cfg: ControlConfig,
        backend: ShowControl,
        hub: EventHub,
        token: Token,
        *,
        health: Health | None = None,
        stats: StatsFn | None = None,
        preview: PreviewSink | None = None,
        viewers: Viewers | None = None,
        listener: Listener | None = None,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self.hub = hub
        self._token = token
        self._health = health
        self._stats = stats
        self.preview = preview
        self.viewers = viewers
        self.listener = listener
        self.metrics = Metrics(self.figures)
        self.counts = {"commands": 0, "errors": 0, "auth_failures": 0, "events_dropped": 0}
        self.sessions: set[Session] = set()
        self._preauthed: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._files = {f.name: f for f in DASHBOARD.iterdir() if f.suffix in CONTENT_TYPES}
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._started = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the port and serve; logs where the dashboard is (never the token)."""
        self.hub.bind(asyncio.get_running_loop())
        self._server = await serve(
            self._session,
            self.cfg.host,
            self.cfg.port,
            process_request=self._http,
            max_size=max(1 << 20, 16 * self.cfg.max_message_bytes),
            max_queue=16,
            compression=None,  # JPEG and PCM do not deflate; JSON events are small
            logger=WIRE_LOG,
            server_header=None,
        )
        self._started = time.monotonic()
        self._ticker = asyncio.create_task(self._publish_metrics(), name="control-metrics")
        where = {"env": f"${self.cfg.token_env}"}.get(self._token.source, str(self._token.path))
        log.info("control: dashboard at %s#token=<the token in %s>", self.url, where)

    async def close(self) -> None:
        """Stop serving and close every console's connection and task."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for session in list(self.sessions):
            await session.stop_forwarding()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The bound TCP port (the real one when ``cfg.port`` is 0)."""
        if self._server is None:
            raise RuntimeError("the control server is not started")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        """The dashboard's address (``http://host:port/``)."""
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"http://{host}:{self.port}/"

    def dashboard_link(self) -> str:
        """The dashboard address with the token in its fragment, to print for the operator (not to log)."""
        return f"{self.url}#token={self._token.value}"

    # -- figures --------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The server's own counters."""
        live_drops = sum(s.dropped for s in self.sessions)
        return {
            **self.counts,
            "events_dropped": self.counts["events_dropped"] + live_drops,
            "clients": len(self.sessions),
        }

    def figures(self) -> dict[str, Any]:
        """Everything /metrics serves: the run's stats, the server's and the preview's counters."""
        out = dict(self._stats()) if self._stats is not None else {}
        out["control"] = self.stats()
        if self.preview is not None:
            out["preview"] = self.preview.stats.as_dict()
        if self.viewers is not None:
            out["webrtc_preview"] = self.viewers.stats.as_dict()
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether every component is ok, and the /healthz body."""
        components: dict[str, Any] = {
            "control": {"ok": True, "state": "serving", "clients": len(self.sessions)}
        }
        try:
            components.update({k: dict(v) for k, v in (self._health() if self._health else {}).items()})
        except Exception as exc:
            log.exception("control: the health check failed")
            components["health"] = {"ok": False, "state": "error", "error": f"{type(exc).__name__}: {exc}"}
        ok = all(isinstance(c, Mapping) and c.get("ok") is True for c in components.values())
        return ok, {
            "ok": ok,
            "uptime_s": round(time.monotonic() - self._started, 1),
            "components": components,
        }

    async def _publish_metrics(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.metrics_interval_s)
            if not self.hub.wants("metrics"):
                continue
            try:
                figures = self.figures()
                ticks = figures.get("ticks")
                fps = self.metrics.collector.rate.update(ticks) if isinstance(ticks, int) else None
                self.hub.publish("metrics", {**snapshot(figures, fps), "control": figures["control"]})
            except Exception:
                log.exception("control: could not publish the metrics snapshot")

    # -- HTTP -----------------------------------------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:  # noqa: PLR0911 (routes)
        url = urlsplit(request.path)
        if is_loopback(self.cfg.host) and not _local_host(request.headers.get("Host", "")):
            # a page on another site that rebinds its name to 127.0.0.1 must not read the console
            return response(http.HTTPStatus.MISDIRECTED_REQUEST, b"wrong Host\n", "text/plain")
        if url.path in ("/ws", "/mic"):
            given = self._upgrade_token(request, url.query)
            if given is None:
                return None
            if not self.check_token(given):
                self.counts["auth_failures"] += 1
                return response(http.HTTPStatus.UNAUTHORIZED, b"wrong token\n", "text/plain")
            self._preauthed.add(connection)
            return None
        if url.path == "/healthz":
            ok, body = self.health()
            status = http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE
            return response(status, orjson.dumps(body, default=str), "application/json")
        if url.path == "/metrics":
            try:
                return response(http.HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE_LATEST)
            except Exception as exc:
                log.exception("control: /metrics failed")
                return response(http.HTTPStatus.INTERNAL_SERVER_ERROR, f"{exc}\n".encode(), "text/plain")
        name = "index.html" if url.path in ("/", "/index.html") else url.path.removeprefix("/static/")
        file = self._files.get(name) if name == "index.html" or url.path.startswith("/static/") else None
        if file is None:
            return response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        return response(http.HTTPStatus.OK, file.read_bytes(), CONTENT_TYPES[file.suffix], SECURITY_HEADERS)

    @staticmethod
    def _upgrade_token(request: Request, query: str) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        tokens = parse_qs(query).get("token")
        return tokens[0] if tokens else None

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the token (constant-time)."""
        return hmac.compare_digest(given.encode(), self._token.value.encode())

    # -- WebSocket ------------------------------------------------------------------------------------

    async def _session(self, ws: ServerConnection) -> None:
        if ws.request is not None and urlsplit(ws.request.path).path == "/mic":
            await self._mic(ws)
            return
        session = Session(self, ws, authed=ws in self._preauthed)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            await session.stop_forwarding()
            await session.stop_viewers()
            self.counts["events_dropped"] += session.dropped
            self.sessions.discard(session)

    async def _mic(self, ws: ServerConnection) -> None:
        if self.listener is None:
            await ws.close(1008, "voice in is off (voice_in.enabled)")
            return
        await MicSession(self, self.listener, ws, authed=ws in self._preauthed).run()

    async def do(self, req: Any) -> Any:
        """Carry out one validated request on the backend (for callers other than a console)."""
        return await perform(self.backend, req)


def _local_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name.strip("[]")) or not host
