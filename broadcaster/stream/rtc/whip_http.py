"""WHIP signalling (RFC 9725) over HTTP: POST the offer, keep the resource, DELETE it when done.

SRS refuses a publish by closing the connection without an HTTP answer; that, like every other
failure, comes out as a ``WhipError`` whose message says what happened in words a user can act on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp

from broadcaster.stream.rtc.settings import redact_url

log = logging.getLogger(__name__)

SDP = "application/sdp"
MAX_ANSWER_BYTES = 256 * 1024


class WhipError(Exception):
    """The WHIP server refused or did not answer; the message is for the user."""


@dataclass(frozen=True)
class WhipResource:
    """A published session: its resource URL (absolute) and the server's SDP answer."""

    url: str
    answer: str


class WhipClient:
    """One WHIP endpoint, with its bearer token; use it inside ``async with``."""

    def __init__(self, endpoint: str, token: str = "", timeout_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self.shown = redact_url(endpoint)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WhipClient:
        self._http = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        """The open HTTP session."""
        if self._http is None:
            raise RuntimeError("WhipClient used outside 'async with'")
        return self._http

    @contextlib.contextmanager
    def _asking(self) -> Iterator[None]:
        """Turn what can go wrong with a request into a ``WhipError`` a user can act on."""
        try:
            yield
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise WhipError(
                f"{self.shown} closed the connection without answering ({type(exc).__name__}). SRS does "
                "this when it refuses a publish: the stream may already have a publisher (an earlier "
                "session not yet expired), or WebRTC is not enabled for the vhost; its log says which"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise WhipError(f"cannot connect to {self.shown}: {exc.os_error or exc}") from exc
        except TimeoutError as exc:
            raise WhipError(f"{self.shown} did not answer in {self._timeout.total:.0f} s") from exc
        except aiohttp.ClientError as exc:
            raise WhipError(f"{self.shown}: {exc}") from exc

    async def publish(self, offer: str) -> WhipResource:
        """POST the SDP offer; the answer and the resource to DELETE later."""
        with self._asking():
            async with self.http.post(self.endpoint, data=offer, headers={"Content-Type": SDP}) as reply:
                text = await _body(reply)
                if reply.status in (401, 403):
                    raise WhipError(
                        f"{self.shown} refused the publish (HTTP {reply.status}): check the token"
                    )
                if reply.status not in (200, 201):
                    raise WhipError(f"{self.shown} answered HTTP {reply.status}: {_gist(text)}")
                if not text.lstrip().startswith("v=0"):
                    raise WhipError(f"{self.shown} answered without an SDP answer: {_gist(text)}")
                location = reply.headers.get("Location", "")
                if not location:
                    log.warning("whip %s: the answer names no resource (Location) to delete", self.shown)
                return WhipResource(urljoin(str(reply.url), location) if location else "", text)

    async def delete(self, resource: WhipResource) -> bool:
        """End the session on the server; True when it is gone (404 counts: it already was)."""
        if not resource.url:
            return False
        try:
            async with self.http.delete(resource.url) as reply:
                if reply.status in (200, 202, 204, 404):
                    return True
                log.warning("whip %s: DELETE answered HTTP %d", self.shown, reply.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("whip %s: DELETE of the session failed: %s", self.shown, exc or type(exc).__name__)
        return False

    async def options(self) -> int:
        """An OPTIONS request (a reachability probe); the HTTP status."""
        with self._asking():
            async with self.http.options(self.endpoint) as reply:
                return reply.status


async def _body(reply: aiohttp.ClientResponse) -> str:
    """The whole body (it may come in several TCP segments), refusing one over MAX_ANSWER_BYTES."""
    if (reply.content_length or 0) > MAX_ANSWER_BYTES:
        raise WhipError(f"an answer of {reply.content_length} bytes; at most {MAX_ANSWER_BYTES} are read")
    body = bytearray()
    while chunk := await reply.content.read(65536):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise WhipError(f"an answer over {MAX_ANSWER_BYTES} bytes")
    return body.decode("utf-8", errors="replace")


def _gist(text: str) -> str:
    text = " ".join(text.split())
    return (text[:200] + "…") if len(text) > 200 else text or "(empty body)"
