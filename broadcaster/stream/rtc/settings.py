"""`[rtc]` and `[[outputs]] type = "whip"`: the WebRTC encode, its network and the WHIP pushes."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IceServer(_Section):
    """One STUN or TURN server (``urls`` like ``stun:stun.example.org:3478`` or ``turn:host:3478``)."""

    urls: str = Field(pattern=r"^(stun|turns?):\S+$")
    username: str = ""
    credential_env: str = ""  # the environment variable holding the TURN password


class RtcConfig(_Section):
    """`[rtc]`: the one WebRTC encode (shared by every WHIP push and every preview viewer) and ICE."""

    video_bitrate_kbps: int = Field(2000, ge=200, le=12000)
    audio_bitrate_kbps: int = Field(64, ge=16, le=256)
    preset: Literal["ultrafast", "superfast", "veryfast", "faster"] = "superfast"
    gop_seconds: float = Field(2.0, ge=0.5, le=10.0)
    # a taller program is scaled down to this height for WebRTC (0: never): a 1080p program keeps its
    # RTMP push at 1080p while WHIP and the live view cost a 720p encode (and stay in H.264 level 3.1)
    max_height: Literal[0, 360, 540, 720] = 720
    # local addresses offered as ICE host candidates; empty = every interface but loopback. Pin one
    # on a machine with several interfaces, or "127.0.0.1" when server and viewers share the machine.
    host_addresses: list[str] = Field(default_factory=list)
    ice_servers: list[IceServer] = Field(default_factory=list)
    # the dashboard's live view over WebRTC (the JPEG view remains as its fallback)
    preview: bool = True
    max_viewers: int = Field(4, ge=1, le=64)
    # how long a peer may take to connect (ICE + DTLS) before it is given up and retried
    connect_timeout_s: float = Field(15.0, ge=2.0, le=120.0)

    @field_validator("host_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.ip_address(address)  # ValueError names it
        return value


class WhipOutputConfig(_Section):
    """`[[outputs]] type = "whip"`: a WebRTC push (WHIP, RFC 9725) to SRS or any WHIP server."""

    type: Literal["whip"]
    url: str
    name: str = ""
    token: str = ""  # a bearer token; better kept out of the file: token_env
    token_env: str = ""
    # extra query parameters, e.g. SRS's eip (the address SRS offers as its candidate)
    query: dict[str, str] = Field(default_factory=dict)
    queue_seconds: float = Field(2.0, ge=0.5, le=30.0)
    request_timeout_s: float = Field(10.0, ge=1.0, le=60.0)
    backoff_initial_s: float = Field(1.0, ge=0.1, le=60.0)
    backoff_max_s: float = Field(30.0, ge=1.0, le=600.0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):
            raise ValueError("an http:// or https:// URL of the WHIP endpoint")
        return value

    def endpoint(self) -> str:
        """The URL with the extra query parameters added (they replace any of the same name)."""
        if not self.query:
            return self.url
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.update(self.query)
        return urlunsplit(parts._replace(query=urlencode(query)))

    def bearer(self) -> str:
        """The bearer token: from ``token_env`` when set and present, else ``token``."""
        if self.token_env:
            return os.environ.get(self.token_env, "").strip() or self.token
        return self.token


_SECRET_KEY = re.compile(r"token|secret|key|auth|pass|sign|sig$|cookie|credential", re.IGNORECASE)
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_CREDENTIAL = re.compile(r"\b(bearer\s+|oauth:|PASS\s+)\S+", re.IGNORECASE)
STREAM_KEY_SCHEMES = ("rtmp", "rtmps", "srt")


def redact_url(url: str) -> str:
    """A URL for logs, replies and figures: user:password dropped, secret-looking query values masked.

    For RTMP (and SRT) the stream key, what follows the application (``rtmp://host/app/KEY``), is
    masked too. Every secret that leaves the process in a URL goes through here.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    stream = parts.scheme.lower() in STREAM_KEY_SCHEMES
    # a stream URL's query is part of its key (Facebook's ?s_bl=...&a=...): every value is masked
    query = "&".join(f"{k}={'***' if stream or _SECRET_KEY.search(k) else v}" for k, v in pairs)
    path = parts.path
    if stream:
        app, _, key = path.lstrip("/").partition("/")
        path = f"/{app}/***" if key else ("/***" if app else path)  # rtmp://host/KEY: all of it
    return urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


def redact_text(text: str) -> str:
    """Free text (an error message, a status) with every URL in it redacted and credentials masked.

    URLs go through ``redact_url``; ``Bearer x``, ``oauth:x`` and an IRC ``PASS x`` lose their ``x``.
    """
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return _CREDENTIAL.sub(lambda m: m.group(1) + "***", text)
