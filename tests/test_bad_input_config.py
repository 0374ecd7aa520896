"""Bad input for the config: any TOML, any ``--set``; the one error that escapes is ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.config import ConfigError, apply_override, load_config, parse_override

KEYS = [
    "program.fps", "program.lead_ms", "avatar.scale", "chat.interval_s", "chat.exchange.USD",
    "chat.thanks.template", "chat.welcome.welcome", "chat.currency", "feeds", "feeds.0", "feeds.0.type",
    "feeds.0.info_url", "feeds.0.channel", "feeds.0.mapping.text", "outputs", "control.port",
    "voice_in.enabled",
]  # fmt: skip
VALUES = [
    "1", "-1", "0.5", "1e400", "nan", "true", "'x'", '"{name.x}"', "'{room_id[0]}'", "'{room_id.real}'",
    "[]", "{}", "[{type='local'}]", "[{type='bilibili', room_id=1}]", "[{type='json', url='ws://h'}]",
    "[{type='twitch', channel='xyz'}]", "{type='json', url='ws://h', preset='custom'}", "²", "9" * 5000,
]  # fmt: skip
overrides = st.builds(
    "{}={}".format,
    st.sampled_from(KEYS) | st.text(max_size=12),
    st.sampled_from(VALUES) | st.text(max_size=12),
)


def _load(text: str | bytes, sets: list[str], folder: Path) -> None:
    path = folder / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        load_config(path, sets)
    except ConfigError as exc:
        assert str(exc)


@given(st.lists(overrides, max_size=3))
def test_any_overrides_load_or_name_the_key(sets: list[str]) -> None:
    try:
        load_config(None, sets)
    except ConfigError as exc:
        assert str(exc)


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_file_loads_or_is_a_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: str | bytes
) -> None:
    _load(data, [], tmp_path_factory.mktemp("cfg"))


@given(st.sampled_from([*KEYS[:4], "chat.user_max", "chat.limits.user_max"]), st.integers(-(10**6), 10**6))
def test_an_integer_override_is_taken_or_refused_by_name(key: str, value: int) -> None:
    try:
        cfg = load_config(None, [f"{key}={value}"])
    except ConfigError as exc:
        assert key in str(exc)  # the key itself, or the passthrough delay check that names lead_ms
        return
    section, _, name = key.rpartition(".")
    node: object = cfg
    for part in section.split("."):
        node = getattr(node, part)
    assert getattr(node, name) == value


@given(st.text(max_size=40))
def test_parse_override_splits_or_says_how(item: str) -> None:
    try:
        path, _ = parse_override(item)
    except ConfigError as exc:
        assert "--set" in str(exc)
    else:
        assert path and "=" in item


@pytest.mark.parametrize(
    ("sets", "said"),
    [
        (["feeds=[{type='local'}]", "feeds.²=1"], "'²' is not an index"),
        (["feeds=[]", "feeds." + "9" * 5000 + "=1"], "is not an index of a list of 0"),
        (["feeds=[1]", "feeds.0.name='x'"], "'0' holds a value, not a table"),
        (["a=" + "[" * 5000], "nested too deeply"),
        (["feeds=[{type='bilibili', room_id=1, info_url='{room_id.x}'}]"], "info_url may name only"),
        (["feeds=[{type='bilibili', room_id=1, info_url='{room_id[0]}'}]"], "info_url may name only"),
        (["chat.thanks.template='{name.x}'"], "a template may use"),
        (["chat.welcome.follow='{names[a]}'"], "a template may use"),
    ],
)
def test_overrides_that_crashed_are_config_errors(sets: list[str], said: str) -> None:
    """Regressions: ValueError, TypeError, AttributeError and RecursionError escaped ``load_config``."""
    with pytest.raises(ConfigError, match=said):
        load_config(None, sets)


@pytest.mark.parametrize(
    ("data", "said"),
    [(b"\xff\xfe[program]", "cannot read"), (b"a = " + b"[" * 5000, "nested too deeply")],
)
def test_files_that_crashed_are_config_errors(tmp_path: Path, data: bytes, said: str) -> None:
    """Regressions: a file not in UTF-8 or nested 5000 deep raised UnicodeDecodeError, RecursionError."""
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=said):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a folder


def test_apply_override_walks_lists_and_tables() -> None:
    data: dict[str, object] = {"feeds": [{"type": "local"}]}
    apply_override(data, ["feeds", "0", "name"], "x")
    apply_override(data, ["chat", "limits", "user_max"], 3)
    assert data == {"feeds": [{"type": "local", "name": "x"}], "chat": {"limits": {"user_max": 3}}}
