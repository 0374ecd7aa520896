import json
from pathlib import Path

import pytest

from broadcaster.config import Config, ConfigError, RecordOutputConfig, RtmpOutputConfig, load_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_shipped_config_equals_the_embedded_defaults_but_for_its_recorder() -> None:
    shipped = load_config(ROOT / "config.toml")
    defaults = Config()
    assert shipped.program == defaults.program
    assert shipped.avatar == defaults.avatar
    assert shipped.encoder == defaults.encoder
    assert shipped.chat == defaults.chat and shipped.store == defaults.store
    assert [type(o) for o in shipped.outputs] == [RecordOutputConfig]
    assert [(f.type, getattr(f, "stdin", None)) for f in shipped.feeds] == [("local", True)]


def test_no_file_gives_the_defaults() -> None:
    cfg = load_config(None)
    assert cfg.program.fps == 25
    assert cfg.program.size == (1280, 720)


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("[program]\nfps = 24\n", "program.fps = 24", "25 or 30"),
        ("[program]\nresolution = '4k'\n", "program.resolution = '4k'", "'720p' or '1080p'"),
        ("[program]\nlead_ms = 5\n", "program.lead_ms = 5", "greater than or equal to 80"),
        ("[program]\nbackground = '#12'\n", "program.background = '#12'", "#rrggbb"),
        ("[encoder.video]\npreset = 'placebo'\n", "encoder.video.preset = 'placebo'", "superfast"),
        ("[avatar]\nbogus = 1\n", "avatar.bogus = 1", "unknown key"),
        ("[[outputs]]\ntype = 'rtmp'\nurl = 'http://x/y'\n", "outputs.0.url = 'http://x/y'", "rtmp://"),
        ("[[outputs]]\ntype = 'record'\npath = 'a.avi'\n", "outputs.0.path = 'a.avi'", ".mp4"),
        ("[[outputs]]\ntype = 'ftp'\n", "outputs.0", "one of 'rtmp', 'whip', 'record'"),
        ("[face]\nlipsync = 'musetalk'\n", "face.lipsync = 'musetalk'", "'classic' or 'wav2lip'"),
        ("[face.wav2lip]\ndevice = 'tpu'\n", "face.wav2lip.device = 'tpu'", "'cuda'"),
        ("[face.classic]\njaw_drop = 0.5\n", "face.classic.jaw_drop = 0.5", "less than or equal to 0.2"),
        ("[avatar]\npreload = ['../x']\n", "avatar.preload.0 = '../x'", "pattern"),
    ],
)
def test_a_bad_value_names_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert key in str(caught.value)
    assert allowed in str(caught.value)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[program\n"))


def test_overrides_reach_any_key_and_are_validated(tmp_path: Path) -> None:
    path = write(tmp_path, "[[outputs]]\ntype = 'rtmp'\nurl = 'rtmp://a/live/x'\n")
    cfg = load_config(
        path,
        [
            "program.fps=30",
            "avatar.name=host2",
            "outputs.0.url=rtmp://b/live/y",
            'program.background="#000000"',
        ],
    )
    assert cfg.program.fps == 30
    assert cfg.avatar.name == "host2"
    assert isinstance(cfg.outputs[0], RtmpOutputConfig)
    assert cfg.outputs[0].url == "rtmp://b/live/y"
    with pytest.raises(ConfigError, match=r"program.fps = 50"):
        load_config(path, ["program.fps=50"])
    with pytest.raises(ConfigError, match="not an index"):
        load_config(path, ["outputs.3.url=rtmp://b/live/y"])
    with pytest.raises(ConfigError, match=r"expected dotted.key=value"):
        load_config(path, ["program.fps"])


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[avatar]\ndir = 'faces'\n"))
    assert cfg.resolve(cfg.avatar.dir) == tmp_path / "faces"
    assert cfg.resolve("/abs/x.mp4") == Path("/abs/x.mp4")


def test_errors_never_show_secrets() -> None:
    feed = {"type": "bilibili", "room_id": 1, "token": "SECRET-KEY", "auth_body": "{not json"}
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"feeds=[{_inline(feed)}]"])
    assert "SECRET-KEY" not in str(caught.value) and "{not json" not in str(caught.value)
    assert "feeds.0" in str(caught.value) and "auth_body" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(None, ['feeds=[{type="twitch", channel="x", token_env=["SECRET-TOO"]}]'])
    assert "SECRET-TOO" not in str(caught.value)


def _inline(table: dict[str, object]) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + "}"


def test_voice_in_is_checked_against_the_program() -> None:
    with pytest.raises(ConfigError, match=r"voice_in\.passthrough\.delay_ms = 350: must be at least"):
        load_config(None, ["program.lead_ms=300", "voice_in.passthrough.delay_ms=350"])
    load_config(None, ["program.lead_ms=300", "voice_in.passthrough.delay_ms=350", "voice_in.enabled=false"])
    with pytest.raises(ConfigError, match=r"voice_in\.asr\.fallback"):
        load_config(None, ['voice_in.asr.engine="pocketsphinx"', 'voice_in.asr.fallback="pocketsphinx"'])
    with pytest.raises(ConfigError, match=r"feeds\.0\.name = 'mic'"):  # the microphone's feed name is taken
        load_config(None, ['feeds=[{type="local", name="mic"}]'])
