"""Peer connections as this product uses them: H.264 constrained baseline + Opus, its ICE settings.

aioice offers every interface's address except loopback and has no per-connection choice, so
``use_host_addresses`` narrows its address lookup for the whole process (``[rtc] host_addresses``).
"""

from __future__ import annotations

import os

import aioice.ice
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
)

from broadcaster.stream.rtc.settings import RtcConfig

# H.264 constrained baseline, level 3.1, packetization-mode 1: what SRS and every browser take
H264_PROFILE = "42e01f"
_original_host_addresses = aioice.ice.get_host_addresses


def use_host_addresses(addresses: list[str]) -> None:
    """Offer only ``addresses`` as ICE host candidates (all interfaces again when empty)."""
    if not addresses:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    pinned = list(addresses)

    def pinned_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = pinned_addresses


def configuration(cfg: RtcConfig) -> RTCConfiguration:
    """The peer configuration: STUN/TURN servers (TURN passwords from the environment)."""
    servers = [
        RTCIceServer(
            urls=s.urls,
            username=s.username or None,
            credential=os.environ.get(s.credential_env) if s.credential_env else None,
        )
        for s in cfg.ice_servers
    ]
    return RTCConfiguration(iceServers=servers or None)


def prefer_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Limit a transceiver to H.264 constrained baseline (video) or Opus (audio)."""
    kind = transceiver.kind

    def keep(mime: str, parameters: dict[str, object]) -> bool:
        if kind == "audio":
            return mime == "audio/opus"
        return mime == "video/rtx" or (
            mime == "video/h264" and parameters.get("profile-level-id") == H264_PROFILE
        )

    codecs = RTCRtpSender.getCapabilities(kind).codecs
    transceiver.setCodecPreferences([c for c in codecs if keep(c.mimeType.lower(), dict(c.parameters))])


def add_sending(pc: RTCPeerConnection, video: MediaStreamTrack | str, audio: MediaStreamTrack | str) -> None:
    """Send-only video (H.264 constrained baseline) and audio (Opus) on ``pc``."""
    for track in (video, audio):
        prefer_codecs(pc.addTransceiver(track, direction="sendonly"))


async def sending_offer(
    pc: RTCPeerConnection, video: MediaStreamTrack | str, audio: MediaStreamTrack | str
) -> str:
    """Add the send-only media, gather candidates and return the complete SDP offer."""
    add_sending(pc, video, audio)
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp
