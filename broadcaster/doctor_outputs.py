"""The doctor's checks of the outputs: RTMP handshakes, WHIP sessions, room for recordings.

Each RTMP server completes the RTMP handshake, each WHIP server answers a real offer (the session is
deleted at once), each recording folder takes a file and has room for hours. Stream keys and tokens are
never shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

from broadcaster.config import Config, OutputConfig, RecordOutputConfig, RtmpOutputConfig
from broadcaster.doctor_checks import Check, Group, Outcome, in_thread
from broadcaster.stream.rtc.settings import RtcConfig, WhipOutputConfig, redact_url
from broadcaster.stream.rtmp_probe import RtmpProbeError, probe_rtmp

GB = 1_000_000_000
WARN_FREE_BYTES = 5 * GB
FAIL_FREE_BYTES = GB // 2
WHIP_STEPS = 3  # OPTIONS, POST, DELETE: each within the timeout


def outputs_group(cfg: Config, outputs: list[OutputConfig], timeout: float) -> Group:
    """[outputs]: one row per output of the config and of ``--output``."""
    from broadcaster.stream.outputs.recorder import segment_path  # noqa: PLC0415 (imports PyAV)
    from broadcaster.stream.outputs.rtmp import redact  # noqa: PLC0415

    checks = []
    for output in outputs:
        if isinstance(output, RtmpOutputConfig):
            shown = redact(output.url)
            checks.append(
                Check(_label(output.name, shown), partial(rtmp_outcome, output.url, timeout), timeout)
            )
        elif isinstance(output, WhipOutputConfig):
            shown = redact_url(output.url)
            run = partial(whip_outcome, output, cfg.rtc, timeout)
            checks.append(Check(_label(output.name, shown), run, WHIP_STEPS * timeout))
        elif isinstance(output, RecordOutputConfig):
            folder = segment_path(cfg.resolve(output.path), 0, time.time()).parent
            bitrate = cfg.encoder.video.bitrate_kbps + cfg.encoder.audio.bitrate_kbps
            checks.append(Check(f"record {output.path}", partial(record_outcome, folder, bitrate), timeout))
    if not checks:

        async def nothing() -> Outcome:
            return Outcome("WARN", "no outputs: the program goes nowhere (add [[outputs]] or --output)")

        checks.append(Check("outputs", nothing, timeout))
    return Group("outputs", checks)


def _label(name: str, shown: str) -> str:
    return f"{name} ({shown})" if name else shown


async def rtmp_outcome(url: str, timeout_s: float) -> Outcome:
    """The RTMP handshake with the server of ``url`` (the stream key is not checked before a publish)."""
    try:
        handshake = await probe_rtmp(url, timeout_s)
    except RtmpProbeError as exc:
        return Outcome("FAIL", str(exc))
    detail = (
        f"RTMP handshake round trip {handshake.round_trip_s * 1000:.0f} ms "
        f"(connect {handshake.connect_s * 1000:.0f} ms)"
    )
    if not handshake.echoed:
        detail += "; the server's S2 does not echo our C1 (its own handshake variant)"
    return Outcome("OK", detail)


async def whip_outcome(output: WhipOutputConfig, rtc: RtcConfig, timeout_s: float) -> Outcome:
    """OPTIONS, then a real publish of a send-only offer, DELETEd at once; the peer is closed after."""
    from aiortc import RTCPeerConnection  # noqa: PLC0415 (WebRTC loads only for WHIP)

    from broadcaster.stream.rtc.peer import configuration, sending_offer, use_host_addresses  # noqa: PLC0415
    from broadcaster.stream.rtc.whip_http import WhipClient, WhipError  # noqa: PLC0415

    use_host_addresses(rtc.host_addresses)
    client = WhipClient(output.endpoint(), output.bearer(), min(output.request_timeout_s, timeout_s))
    pc = RTCPeerConnection(configuration(rtc))
    try:
        async with client:
            try:
                status = await client.options()
            except WhipError as exc:
                return Outcome("FAIL", str(exc))
            answers = 200 <= status < 300 or status == 405
            said = f"OPTIONS {status}" + ("" if answers else " (not what a WHIP endpoint answers)")
            offer = await sending_offer(pc, "video", "audio")
            started = time.monotonic()
            try:
                resource = await client.publish(offer)
            except WhipError as exc:
                return Outcome("FAIL", f"{said}; publish: {exc}")
            took = f"{said}; offer answered in {(time.monotonic() - started) * 1000:.0f} ms"
            if not resource.url:
                return Outcome(
                    "WARN",
                    f"{took}, but no resource URL (Location) to DELETE: the test session lingers until "
                    "the server drops it",
                )
            if not await client.delete(resource):
                return Outcome(
                    "FAIL",
                    f"{took}, but the DELETE of the test session was refused (see the log): it may block "
                    "the real publish until the server drops it",
                )
            return Outcome("OK", f"{took}; test session deleted")
    finally:
        await pc.close()


async def record_outcome(
    folder: Path, bitrate_kbps: int, warn_bytes: int = WARN_FREE_BYTES, fail_bytes: int = FAIL_FREE_BYTES
) -> Outcome:
    """The folder exists (or is created), takes a file, and has room for some hours at ``bitrate_kbps``."""
    return await in_thread(partial(_record, folder, bitrate_kbps, warn_bytes, fail_bytes))


def _record(folder: Path, bitrate_kbps: int, warn_bytes: int, fail_bytes: int) -> Outcome:
    created = not folder.exists()
    if folder.exists() and not folder.is_dir():
        return Outcome("FAIL", f"{folder} is a file, where the recordings' folder should be")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return Outcome("FAIL", f"cannot create {folder}: {exc.strerror or exc}")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as probe:
            probe.write(bytes(4096))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return Outcome("FAIL", f"cannot write in {folder}: {exc.strerror or exc}")
    free = shutil.disk_usage(folder).free
    hours = free * 8 / (bitrate_kbps * 1000) / 3600
    detail = (
        f"{folder}{' (created)' if created else ''} is writable; {free / GB:.1f} GB free, "
        f"about {hours:.1f} h at {bitrate_kbps} kb/s"
    )
    if free < fail_bytes:
        return Outcome("FAIL", f"{detail}: free some space or record elsewhere")
    if free < warn_bytes:
        return Outcome("WARN", f"{detail}: less than {warn_bytes / GB:g} GB left")
    return Outcome("OK", detail)
