"""The RTMP relay: a child process that reads FLV on stdin and publishes it to an RTMP(S) URL.

PyAV opens network outputs while holding the GIL and without a timeout, so a server that accepts the
TCP connection and then stalls would freeze a whole Python process. Here it can only freeze this child,
which the parent watches through the pipe and replaces when it stops taking data.

Usage: BROADCASTER_RTMP_URL=URL python -m broadcaster.stream.outputs.rtmp_relay (the URL holds the
stream key, so it comes in the environment, private to this user, not on the command line that every
user of the machine can read; ``rtmp_relay URL`` still works by hand). Errors are printed without it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import av

PROBE_OPTIONS = {"probesize": "4000000", "analyzeduration": "1000000"}
URL_ENV = "BROADCASTER_RTMP_URL"


def relay(url: str) -> int:
    """Copy every packet from stdin's FLV to ``url``; prints 'live' on stderr once the first one is sent."""
    source: Any = av.open(sys.stdin.buffer, "r", format="flv", options=PROBE_OPTIONS)
    kinds = sorted(s.type for s in source.streams)
    if kinds != ["audio", "video"]:
        print(f"error: expected one audio and one video stream, found {kinds}", file=sys.stderr, flush=True)
        return 1
    sink: Any = av.open(url, "w", format="flv")
    streams = {s.index: sink.add_stream_from_template(s, opaque=True) for s in source.streams}
    announced = False
    for packet in source.demux():
        if packet.dts is None:
            continue
        packet.stream = streams[packet.stream.index]
        sink.mux(packet)
        if not announced:
            print("live", file=sys.stderr, flush=True)
            announced = True
    sink.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process."""
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if len(args) == 1 else os.environ.get(URL_ENV, "")
    if len(args) > 1 or not url:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return relay(url)
    except (av.FFmpegError, OSError) as exc:
        from broadcaster.stream.rtc.settings import redact_text  # noqa: PLC0415 (only on failure)

        print(f"error: {redact_text(str(exc))}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
