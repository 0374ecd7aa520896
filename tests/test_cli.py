import signal
import time
from pathlib import Path

import numpy as np

from tests.media import read_back
from tests.run_cli import ROOT, finish, run, start


def test_check_config_accepts_the_shipped_config(avatar_root: Path) -> None:
    done = run("check-config", "--config", str(ROOT / "config.toml"), "--set", f'avatar.dir="{avatar_root}"')
    assert done.code == 0, done.stderr
    assert "config OK" in done.stdout


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[program]\nfps = 60\n")
    done = run("check-config", "--config", str(bad))
    assert done.code == 2
    assert "program.fps = 60" in done.stderr and "25 or 30" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_avatar_is_a_clear_error(tmp_path: Path) -> None:
    for args in (("check-config",), ("run", "--for", "1")):
        done = run(*args, "--set", f'avatar.dir="{tmp_path}"', "--set", "avatar.name=nobody")
        assert done.code == 2
        assert "avatar 'nobody' not found" in done.stderr and "avatar build" in done.stderr
        assert "Traceback" not in done.stderr


def test_bad_command_line_values_exit_2(avatar_root: Path, tmp_path: Path) -> None:
    for extra, message in (
        (("--output", "ftp://x/y"), "expected an rtmp(s):// URL, a whip+http(s):// URL"),
        (("--output", "whip+http://"), "URL of the WHIP endpoint"),
        (("--play-wav", str(tmp_path / "none.wav")), "no such file"),
        (("--set", "program.fps"), "expected dotted.key=value"),
    ):
        done = finish(start(avatar_root, "--for", "1", *extra))
        assert done.code == 2, done.stderr
        assert message in done.stderr


def test_run_for_records_and_exits_cleanly(avatar_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mkv"
    done = finish(
        start(avatar_root, "--for", "2", "--output", str(target), "--set", 'program.resolution="1080p"')
    )
    assert done.code == 0, done.stderr[-2000:]
    assert f"recording to {target}" in done.stderr
    assert done.summary["outputs"][0]["files"] == [str(target)]
    back = read_back(target)
    assert back.frames == 50
    assert back.video_codec == "h264"


def test_sigterm_shuts_down_cleanly_with_a_playable_file(avatar_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    process = start(avatar_root, "--output", str(target))
    deadline = time.monotonic() + 20
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    done = finish(process, timeout=30)
    assert done.code == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.summary["ticks"] > 25
    assert read_back(target).frames > 25


def test_lines_and_chat_replies_are_spoken_on_the_program(avatar_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    done = finish(
        start(
            avatar_root,
            *("--for", "30", "--output", str(target)),
            *("--set", f'voice.cache.dir="{tmp_path / "tts"}"', "--set", "llm.local_threads=1"),
            *("--say", "欢迎来到直播间！加我微信abc12345领券。西湖龙井今天99.9元一罐。"),
            *("--chat", "amy: What tea is this?"),
        ),
        timeout=180,
    )
    assert done.code == 0, done.stderr[-3000:]
    summary = done.summary
    host = summary["host"]
    assert host["lines"] == 1 and host["replies"] == 1, (host, summary["chat"])
    assert summary["chat"]["decisions"] == {"question": 1}
    assert summary["llm"]["requests"] == 1 and summary["llm"]["failures"] == 0
    assert summary["voice"]["engines"]["local"]["sentences"] >= 3
    assert summary["voice"]["unspoken"] == 0
    assert summary["safety"].get("action:drop", 0) >= 1, summary["safety"]
    assert summary["speech"]["samples"] > 3 * 48000
    assert summary["lipsync"]["utterances"] >= 2 and summary["lipsync"]["frames"] > 50
    back = read_back(target)
    first_second = back.audio[: 48000 * 2]
    assert np.sqrt((first_second**2).mean()) > 0.02, "the line is on air from the start"
