"""RTMP push against a real nginx-rtmp on loopback, read back from the server's own recordings."""

import socket
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import NginxRtmp
from tests.media import onset, read_back, write_tone_wav
from tests.run_cli import Finished, finish, start

FPS = 25


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def unharmed(done: Finished, seconds: int) -> dict[str, Any]:
    """The run exited cleanly, rendered every tick on time and the encoder dropped nothing."""
    assert done.code == 0, done.stderr[-3000:]
    summary = done.summary
    assert summary["ticks"] == seconds * FPS
    assert summary["late_max_ms"] < 100
    assert summary["encoder"]["dropped"] == 0
    return summary


def test_push_arrives_whole_and_in_sync(nginx: NginxRtmp, avatar_root: Path, tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_tone_wav(wav, 22050, silence_s=1.0, tone_s=0.6, tail_s=0.4)
    done = finish(start(avatar_root, "--for", "5", "--output", nginx.url, "--play-wav", str(wav)))
    assert done.code == 0, done.stderr[-3000:]
    summary = done.summary
    ticks = summary["ticks"]
    assert ticks == 5 * FPS
    assert summary["outputs"][0]["reconnects"] == 0
    assert wait_for(lambda: len(nginx.recordings()) == 1, 5)
    back = read_back(nginx.recordings()[0])
    assert (back.video_codec, back.audio_codec) == ("h264", "aac")
    assert abs(back.frames - ticks) <= 1
    assert abs(back.audio_seconds - ticks / FPS) <= 1 / FPS
    assert all(b > a for a, b in zip(back.video_pts, back.video_pts[1:], strict=False))
    assert back.keyframes[0]
    # The tone starts 1.0 s into the WAV, which went on air at tick 0.
    heard = back.audio_start - back.video_pts[0] + onset(back.audio)
    assert abs(heard - 1.0) <= 0.040, heard


def test_server_killed_and_restarted_the_stream_resumes(nginx: NginxRtmp, avatar_root: Path) -> None:
    process = start(avatar_root, "--for", "16", "--output", nginx.url, "--set", "program.status_interval_s=1")
    assert wait_for(lambda: len(nginx.recordings()) == 1, 8)
    time.sleep(2)
    nginx.kill()
    time.sleep(3)
    nginx.start()
    done = finish(process)
    summary = unharmed(done, 16)
    assert summary["repeats"] <= 5
    rtmp = summary["outputs"][0]
    assert rtmp["reconnects"] >= 1
    files = nginx.recordings()
    assert len(files) >= 2
    resumed = read_back(files[-1])
    assert resumed.keyframes[0]
    assert resumed.frames >= 4 * FPS


def test_a_paused_server_never_stalls_the_program(nginx: NginxRtmp, avatar_root: Path) -> None:
    process = start(avatar_root, "--for", "14", "--output", nginx.url, "--set", "program.status_interval_s=1")
    assert wait_for(lambda: len(nginx.recordings()) == 1, 8)
    time.sleep(1)
    nginx.pause()
    time.sleep(5)
    nginx.resume()
    done = finish(process)
    unharmed(done, 14)
    assert read_back(nginx.recordings()[-1]).frames >= 10 * FPS


class BlackHole:
    """Accepts TCP connections and never answers: a server stalled in the RTMP handshake."""

    def __init__(self, port: int) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()
        self.thread.join(2)


def test_a_server_that_stalls_is_dropped_and_rejoined(nginx: NginxRtmp, avatar_root: Path) -> None:
    nginx.kill()
    hole = BlackHole(nginx.port)
    process = start(
        avatar_root,
        "--for",
        "22",
        "--set",
        "program.status_interval_s=1",
        "--set",
        "outputs=[{type='rtmp', url='" + nginx.url + "', stall_timeout_s=2, backoff_max_s=2}]",
    )
    try:  # two sessions swallowed by the hole (a loaded machine takes longer to start each)
        assert wait_for(lambda: len(hole.held) >= 2, 14)
        time.sleep(1)
    finally:
        hole.close()
    nginx.start()
    done = finish(process)
    summary = unharmed(done, 22)
    assert "took no data for 2 s" in done.stderr
    assert len(hole.held) >= 2
    rtmp = summary["outputs"][0]
    assert rtmp["reconnects"] >= 2
    files = nginx.recordings()
    assert len(files) == 1
    assert read_back(files[0]).frames >= 4 * FPS
