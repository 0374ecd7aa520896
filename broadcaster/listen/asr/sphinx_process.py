"""PocketSphinx in a child process: its decoder holds the GIL while it decodes.

Measured: a Python loop runs at about a fifth of its speed while a thread feeds pocketsphinx 20 ms
blocks, and the program's render thread is such a loop (its lead shrank from 150 ms to 30 under a
conversation). So the decoder lives in ``python -m broadcaster.listen.asr.sphinx_process``, driven
over its stdin and stdout by ``DecoderProcess``, whose calls block in the engine's worker thread on a
pipe (which releases the GIL). Every request gets one reply; a dead child is an ``AsrError``.

Wire: a request is one op byte and a 4-byte little-endian length, then that many bytes; a reply is
a status byte (``+`` ok, ``-`` error) and a length-prefixed UTF-8 text.
"""

from __future__ import annotations

import contextlib
import json
import select
import struct
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from broadcaster.listen.asr.base import AsrError

HEADER = struct.Struct("<cI")
CALL_TIMEOUT_S = 10.0  # one call (20 ms to a second of audio) takes milliseconds
LOAD_TIMEOUT_S = 60.0
OPS = {"load": b"L", "start": b"S", "audio": b"A", "hyp": b"H", "end": b"E"}


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) != size:
        raise EOFError
    return data


class DecoderProcess:
    """A pocketsphinx decoder in a child process; the methods the stream needs, called from one thread."""

    def __init__(self, files: dict[str, Path]) -> None:
        self._files = json.dumps({k: str(v) for k, v in files.items()}).encode()
        self._child = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "broadcaster.listen.asr.sphinx_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._call("load", self._files, LOAD_TIMEOUT_S)
        except AsrError:
            self.close()
            raise
        return self._child

    def _call(self, op: str, payload: bytes = b"", timeout: float = CALL_TIMEOUT_S) -> str:
        child = self._child
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(HEADER.pack(OPS[op], len(payload)) + payload)
            child.stdin.flush()
            if not select.select([child.stdout], [], [], timeout)[0]:
                child.kill()  # hung: a turn must not wait for ever (the next one starts a new child)
                raise EOFError
            status, size = HEADER.unpack(_read_exact(child.stdout, HEADER.size))
            text = _read_exact(child.stdout, size).decode()
        except (BrokenPipeError, EOFError, OSError) as exc:
            raise AsrError(f"pocketsphinx: the decoder process ended (exit {child.poll()})") from exc
        if status != b"+":
            raise AsrError(f"pocketsphinx: {text}")
        return text

    def start_utt(self) -> None:
        """Begin an utterance (in a new child if the last one died)."""
        if self._child.poll() is not None:
            self.close()
            self._spawn()
        self._call("start")

    def process_raw(self, pcm: bytes) -> None:
        """Decode s16le 16 kHz mono audio."""
        self._call("audio", pcm)

    def hypothesis(self) -> str:
        """The best text so far."""
        return self._call("hyp")

    def end_utt(self) -> str:
        """End the utterance; its final text."""
        return self._call("end")

    def close(self) -> None:
        """End the child (closing its stdin ends its loop; killed if it does not go)."""
        child = self._child
        with contextlib.suppress(OSError):
            if child.stdin is not None:
                child.stdin.close()
        try:
            child.wait(2.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The child's loop: one reply per request until stdin closes."""
    decoder: Any = None

    def reply(ok: bool, text: str = "") -> None:
        data = text.encode()
        stdout.write(HEADER.pack(b"+" if ok else b"-", len(data)) + data)
        stdout.flush()

    while True:
        try:
            op, size = HEADER.unpack(_read_exact(stdin, HEADER.size))
            payload = _read_exact(stdin, size)
        except EOFError:
            return
        try:
            if op == OPS["load"]:
                from pocketsphinx import Decoder  # noqa: PLC0415

                files = json.loads(payload)
                decoder = Decoder(
                    hmm=files["hmm"], lm=files["lm"], dict=files["dict"], samprate=16000, loglevel="ERROR"
                )
                reply(True)
            elif decoder is None:
                reply(False, "no model loaded")
            elif op == OPS["start"]:
                decoder.start_utt()
                reply(True)
            elif op == OPS["audio"]:
                decoder.process_raw(payload, False, False)
                reply(True)
            elif op == OPS["hyp"]:
                hyp = decoder.hyp()
                reply(True, hyp.hypstr if hyp is not None else "")
            elif op == OPS["end"]:
                decoder.end_utt()
                hyp = decoder.hyp()
                reply(True, hyp.hypstr if hyp is not None else "")
            else:
                reply(False, f"unknown op {op!r}")
        except Exception as exc:  # reported to the parent, which fails the turn
            reply(False, f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
