"""The RTMP relay: a child process that reads FLV on stdin and publishes it to an RTMP(S) URL.

PyAV opens network outputs while holding the GIL and without a timeout, so a server that accepts the
TCP connection and then stalls would freeze a whole Python process. Here it can only freeze this child,
which the parent watches through the pipe and replaces when it stops taking data.

Usage: python -m broadcaster.stream.outputs.rtmp_relay URL
"""

from __future__ import annotations

import sys
from typing import Any

import av

PROBE_OPTIONS = {"probesize": "4000000", "analyzeduration": "1000000"}


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
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return relay(args[0])
    except (av.FFmpegError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
