"""The control server: one port for the dashboard, /healthz, /metrics and the moderators' WebSocket.

Plain HTTP GETs are answered during the WebSocket opening handshake (``process_request``); ``/ws``
upgrades. A console authenticates with the token (a first ``auth`` message, or an ``Authorization:
Bearer`` header or ``?token=`` query on the upgrade) and then sends commands, each answered by one
reply; after ``subscribe`` it also receives the hub's events. Nothing a client sends can stop the
server: a bad message gets an error reply, a failing command an ``internal`` error (logged).

Before any of that, every request passes the gate: its address's request rate, the ``Host`` (on
loopback), and for a WebSocket the ``Origin`` (a page of another site may not open the console in its
visitor's browser), the number of consoles open and the address's failed authentications.
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
from broadcaster.control.limits import AddressLimits, Limits, client_address
from broadcaster.control.metrics import Metrics, snapshot
from broadcaster.control.mic_session import MicSession
from broadcaster.control.preview import PreviewSink
from broadcaster.control.session import Session, perform
from broadcaster.control.settings import ControlConfig, Token, is_loopback, normal_origin
from broadcaster.listen.listener import Listener
from broadcaster.stream.rtc.settings import redact_text
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
MAX_UNAUTHED = 4  # console connections at once that have not sent their token yet
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
        self.counts = {
            "commands": 0,
            "errors": 0,
            "auth_failures": 0,
            "events_dropped": 0,
            "rate_limited": 0,
            "refused": 0,
        }
        self.sessions: set[Session] = set()
        self.addresses = AddressLimits(
            Limits(
                cfg.connects_per_second, cfg.connect_burst, cfg.auth_failures_per_address, cfg.auth_lockout_s
            )
        )
        self._preauthed: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._open: set[ServerConnection] = set()  # /ws and /mic sessions open
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
            error = redact_text(f"{type(exc).__name__}: {exc}")
            components["health"] = {"ok": False, "state": "error", "error": error}
        # a service the show falls back from (a TTS engine, the LLM) degrades it: named, not a 503,
        # since a restart would not bring it back and the room is still on air
        failing = [k for k, c in components.items() if not (isinstance(c, Mapping) and c.get("ok") is True)]
        degraded = [k for k in failing if isinstance(c := components[k], Mapping) and c.get("degrades")]
        ok = len(failing) == len(degraded)
        return ok, {
            "ok": ok,
            "degraded": degraded,
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
        address = client_address(connection)
        url = urlsplit(request.path)
        # a bare liveness probe is never rate-limited: a 429 would read as "dead" and restart the show
        probe = url.path == "/healthz" and self._bearer(request) is None
        if not probe and not self.addresses.connect(address):
            self.counts["rate_limited"] += 1
            return response(http.HTTPStatus.TOO_MANY_REQUESTS, b"too many requests\n", "text/plain")
        hosts = request.headers.get_all("Host")
        if len(hosts) > 1 or (is_loopback(self.cfg.host) and not _local_host(hosts[0] if hosts else "")):
            # a page on another site that rebinds its name to 127.0.0.1 must not read the console
            return response(http.HTTPStatus.MISDIRECTED_REQUEST, b"wrong Host\n", "text/plain")
        if url.path in ("/ws", "/mic"):
            return self._upgrade(connection, request, url.query, address)
        if url.path == "/healthz":
            return self._healthz(request, address)
        if url.path == "/metrics":
            refused = self._http_auth(request, address, required=self.cfg.http_auth)
            if refused is not None:
                return refused
            try:
                return response(http.HTTPStatus.OK, self.metrics.render(), CONTENT_TYPE_LATEST)
            except Exception as exc:
                log.exception("control: /metrics failed")
                body = redact_text(f"{type(exc).__name__}: {exc}\n").encode()
                return response(http.HTTPStatus.INTERNAL_SERVER_ERROR, body, "text/plain")
        name = "index.html" if url.path in ("/", "/index.html") else url.path.removeprefix("/static/")
        file = self._files.get(name) if name == "index.html" or url.path.startswith("/static/") else None
        if file is None:
            return response(http.HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        return response(http.HTTPStatus.OK, file.read_bytes(), CONTENT_TYPES[file.suffix], SECURITY_HEADERS)

    def _upgrade(
        self, connection: ServerConnection, request: Request, query: str, address: str
    ) -> Response | None:
        """The gate of a WebSocket: its Origin, the consoles open, the address's lockout, the token."""
        if not self.origin_allowed(request.headers):
            self.counts["refused"] += 1
            log.warning("control: refused a WebSocket from %s: Origin not allowed", address)
            return response(http.HTTPStatus.FORBIDDEN, b"cross-origin WebSocket refused\n", "text/plain")
        if len(self._open) >= self.cfg.max_consoles:
            self.counts["refused"] += 1
            body = f"{self.cfg.max_consoles} consoles are connected (control.max_consoles)\n".encode()
            return response(http.HTTPStatus.SERVICE_UNAVAILABLE, body, "text/plain")
        locked = self.addresses.locked(address)
        if locked:
            return self._locked_out(locked)
        given = self._bearer(request) or next(iter(parse_qs(query).get("token", [])), None)
        if given is not None:
            if not self.check_token(given):
                self.auth_failed(address)
                return response(http.HTTPStatus.UNAUTHORIZED, b"wrong token\n", "text/plain")
            self._preauthed.add(connection)
        elif sum(not s.authed for s in self.sessions) >= MAX_UNAUTHED:
            # without a token yet (it comes in the first message): a few at a time, so connections
            # that never authenticate cannot hold every console slot
            self.counts["refused"] += 1
            return response(http.HTTPStatus.SERVICE_UNAVAILABLE, b"too many unauthenticated\n", "text/plain")
        return None

    def _healthz(self, request: Request, address: str) -> Response:
        """The status code for anyone (probes); the components' detail for the token holder."""
        ok, body = self.health()
        status = http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE
        given = self._bearer(request) is not None
        if given or not self.cfg.http_auth:
            refused = self._http_auth(request, address, required=self.cfg.http_auth)
            if refused is not None:
                return refused
            return response(status, orjson.dumps(body, default=str), "application/json")
        brief = {"ok": ok, "degraded": bool(body["degraded"])}
        return response(status, orjson.dumps(brief), "application/json")

    def _http_auth(self, request: Request, address: str, *, required: bool) -> Response | None:
        """None when the request may see what it asked for, else the refusal (401 or 429)."""
        if not required:
            return None
        locked = self.addresses.locked(address)
        if locked:
            return self._locked_out(locked)
        given = self._bearer(request)
        if given is not None and self.check_token(given):
            return None
        if given is not None:
            self.auth_failed(address)
        challenge = [("WWW-Authenticate", 'Bearer realm="broadcaster"')]
        body = b"wrong token\n" if given is not None else b"send Authorization: Bearer <the console token>\n"
        return response(http.HTTPStatus.UNAUTHORIZED, body, "text/plain", challenge)

    def _locked_out(self, wait_s: float) -> Response:
        self.counts["rate_limited"] += 1
        body = b"too many wrong tokens from this address; try again later\n"
        retry = [("Retry-After", str(max(1, round(wait_s))))]
        return response(http.HTTPStatus.TOO_MANY_REQUESTS, body, "text/plain", retry)

    @staticmethod
    def _bearer(request: Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None

    def origin_allowed(self, headers: Headers) -> bool:
        """Whether a WebSocket with these headers may open.

        Yes with no Origin (not a browser), the console's own (the ``host:port`` of its ``Host``), or
        one of ``allowed_origins``; no for any other, ``null`` (a sandboxed frame, a file) or several.
        """
        origins = headers.get_all("Origin")
        if not origins:
            return True
        origin = normal_origin(origins[0]) if len(origins) == 1 else None
        if origin is None:  # "null" (a sandboxed frame, a file), garbage, or several
            return False
        if origin in self.cfg.allowed_origins:
            return True
        hosts = headers.get_all("Host")
        scheme = origin.split("://", 1)[0]
        own = normal_origin(f"{scheme}://{hosts[0]}") if len(hosts) == 1 else None
        return own is not None and origin == own

    def check_token(self, given: str) -> bool:
        """Whether ``given`` is the token (constant-time)."""
        return hmac.compare_digest(given.encode(), self._token.value.encode())

    def auth_failed(self, address: str) -> None:
        """Count a wrong token from ``address`` (towards its lockout)."""
        self.counts["auth_failures"] += 1
        self.addresses.failed(address)

    # -- WebSocket ------------------------------------------------------------------------------------

    async def _session(self, ws: ServerConnection) -> None:
        self._open.add(ws)  # counted once its handshake succeeded: a failed upgrade holds no slot
        try:
            if ws.request is not None and urlsplit(ws.request.path).path == "/mic":
                await self._mic(ws)
                return
            await self._console(ws)
        finally:
            self._open.discard(ws)

    async def _console(self, ws: ServerConnection) -> None:
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
