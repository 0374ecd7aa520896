"""The SRS kit in srs/: the config reads as SRS reads it and names only directives SRS accepts, and the
config, the compose file, the Dockerfile and the page agree on ports, URLs and the broadcaster's keys.

SRS's config syntax is nginx's: ``name arg...;`` and ``name arg... { ... }``, ``#`` comments, quoted
arguments. The parser here follows SRS's reader (``SrsConfDirective::read_token``) and is stricter in
one way that fits a hand-written file: a statement ends on the line it starts, so a missing ``;`` is
reported at its line instead of silently joining the next line's words to it.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from broadcaster.config import Config, RtmpOutputConfig, output_from_target
from broadcaster.control.settings import ControlConfig
from broadcaster.stream.outputs.rtmp import redact

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "srs"

# The ossrs/srs image's working directory (WORKDIR in ossrs/srs's Dockerfile): `-c` paths are relative to it.
SRS_WORKDIR = "/usr/local/srs"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "srs"}
APP, STREAM = "live", "livestream"

# Directive names per block, from SrsConfig::check_normal_config (trunk/src/app/srs_app_config.cpp),
# which stops SRS on any other name: only the names both SRS 5.0 and SRS 7.0 accept (SRS 6 lies
# between them). Root `listen`/`chunk_size` are SRS 5/6 names that SRS 7 moves into `rtmp { }` itself.
KNOWN: dict[str, frozenset[str]] = {
    name: frozenset(words.split())
    for name, words in {
        "": "listen chunk_size pid ff_log_dir ff_log_level srs_log_tank srs_log_level srs_log_level_v2 "
        "srs_log_file max_connections daemon heartbeat tencentcloud_apm tencentcloud_cls http_api stats "
        "vhost pithy_print_ms http_server stream_caster rtc_server srt_server utc_time work_dir "
        "asprocess server_id grace_final_wait force_grace_quit grace_start_wait empty_ip_ok "
        "disable_daemon_for_docker inotify_auto_reload auto_reload_for_docker tcmalloc_release_rate "
        "query_latest_version first_wait_for_qlv circuit_breaker is_full in_docker exporter",
        "http_api": "enabled listen crossdomain raw_api auth https",
        "http_server": "enabled listen dir crossdomain https",
        "rtc_server": "enabled listen dir candidate ecdsa tcp encrypt reuseport merge_nalus black_hole "
        "protocol ip_family api_as_candidates resolve_api_domain keep_api_domain "
        "use_auto_detect_network_ip",
        "vhost": "enabled chunk_size min_latency tcp_nodelay dvr ingest hls http_hooks refer forward "
        "transcode bandcheck play publish cluster security http_remux dash http_static hds exec "
        "in_ack_size out_ack_size rtc srt",
        "vhost.rtc": "enabled nack twcc nack_no_copy bframe aac stun_timeout stun_strict_check dtls_role "
        "dtls_version drop_for_pt rtc_to_rtmp pli_for_rtmp rtmp_to_rtc keep_bframe opus_bitrate "
        "aac_bitrate keep_avc_nalu_sei",
        "vhost.http_remux": "enabled mount fast_cache drop_if_not_match has_audio has_video guess_has_av",
        "vhost.hls": "enabled hls_entry_prefix hls_path hls_fragment hls_window hls_on_error hls_storage "
        "hls_mount hls_td_ratio hls_aof_ratio hls_acodec hls_vcodec hls_m3u8_file hls_ts_file "
        "hls_ts_floor hls_cleanup hls_nb_notify hls_wait_keyframe hls_dispose hls_keys "
        "hls_fragments_per_key hls_key_file hls_key_file_path hls_key_url hls_dts_directly hls_ctx "
        "hls_ts_ctx",
        "vhost.play": "time_jitter mix_correct atc atc_auto mw_latency gop_cache gop_cache_max_frames "
        "queue_length send_min_interval reduce_sequence_header mw_msgs",
        "vhost.publish": "mr mr_latency firstpkt_timeout normal_timeout parse_sps try_annexb_first "
        "kickoff_for_idle",
        "vhost.forward": "enabled destination backend",
        "vhost.transcode": "enabled ffmpeg engine",
        "vhost.transcode.engine": "enabled vfilter vcodec vbitrate vfps vwidth vheight vthreads vprofile "
        "vpreset vparams acodec abitrate asample_rate achannels aparams output perfile iformat oformat",
    }.items()
}
# Blocks whose children are FFmpeg options, passed through unchecked by SRS.
FREE_FORM = {f"vhost.transcode.engine.{name}" for name in ("vfilter", "vparams", "aparams", "perfile")}


# -- the parser ---------------------------------------------------------------------------------------


class ConfigSyntaxError(ValueError):
    """A config SRS would not read; the message starts with the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass
class Directive:
    name: str
    args: list[str]
    line: int
    block: list[Directive] | None = None  # None: a `name args;` directive

    def get(self, name: str) -> Directive:
        assert self.block is not None, f"{self.name} is not a block"
        found = [d for d in self.block if d.name == name]
        assert len(found) == 1, f"{self.name} has {len(found)} `{name}`"
        return found[0]

    def value(self, name: str) -> str:
        args = self.get(name).args
        assert len(args) == 1, f"{self.name}.{name} has arguments {args}"
        return args[0]


def tokens(text: str) -> Iterator[tuple[str, int, bool]]:
    """(text, line, is_argument): words and quoted strings are arguments; `;`, `{`, `}` are not."""
    i, line, n = 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line, i = line + 1, i + 1
        elif ch in " \t\r":
            i += 1
        elif ch == "#":  # a comment where a word could start; inside a word `#` is literal, as in SRS
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch in ";{}":
            yield ch, line, False
            i += 1
        elif ch in "\"'":
            end = text.find(ch, i + 1)
            if end < 0:
                raise ConfigSyntaxError(line, f"unterminated {ch} quote")
            value = text[i + 1 : end]
            yield value, line, True
            line, i = line + value.count("\n"), end + 1
            if i < n and text[i] not in " \t\r\n;{":
                raise ConfigSyntaxError(line, "a quoted argument must be followed by a space, ';' or '{'")
        else:
            j = i
            while j < n and text[j] not in " \t\r\n;{}":
                j += 1
            yield text[i:j], line, True
            i = j


def parse(text: str) -> list[Directive]:
    """The directive tree, or ConfigSyntaxError naming the line."""
    root: list[Directive] = []
    stack: list[tuple[Directive | None, list[Directive]]] = [(None, root)]
    words: list[tuple[str, int]] = []
    for value, line, is_argument in tokens(text):
        if words and line != words[0][1]:
            raise ConfigSyntaxError(words[0][1], f"`{words[0][0]}` has no ';' at the end of its line")
        if is_argument:
            words.append((value, line))
            continue
        if value == "}":
            if words:
                raise ConfigSyntaxError(words[0][1], f"`{words[0][0]}` has no ';' before '}}'")
            if len(stack) == 1:
                raise ConfigSyntaxError(line, "'}' closes no block")
            stack.pop()
            continue
        if not words:
            raise ConfigSyntaxError(line, f"'{value}' with no directive before it")
        directive = Directive(words[0][0], [w for w, _ in words[1:]], words[0][1])
        stack[-1][1].append(directive)
        if value == "{":
            directive.block = []
            stack.append((directive, directive.block))
        words = []
    if words:
        raise ConfigSyntaxError(words[0][1], f"`{words[0][0]}` has no ';' at the end")
    opened = stack[-1][0]
    if opened is not None:
        raise ConfigSyntaxError(opened.line, f"block `{opened.name}` is never closed")
    return root


def unknown(directives: list[Directive], scope: str = "") -> list[str]:
    """Directives SRS would refuse, as `line N: scope.name`."""
    problems = []
    for d in directives:
        where = f"{scope}.{d.name}" if scope else d.name
        if d.name not in KNOWN[scope]:
            problems.append(f"line {d.line}: {where}")
        elif d.block is not None and where not in FREE_FORM:
            if where in KNOWN:
                problems.extend(unknown(d.block, where))
            else:
                problems.append(f"line {d.line}: {where} (a block without a list of names here)")
    return problems


def top(directives: list[Directive], name: str, *args: str) -> Directive:
    found = [d for d in directives if d.name == name and d.args[: len(args)] == list(args)]
    assert len(found) == 1, f"{len(found)} `{name} {' '.join(args)}` in srs.conf"
    return found[0]


# -- the kit's files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conf() -> list[Directive]:
    return parse((KIT / "srs.conf").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vhost(conf: list[Directive]) -> Directive:
    return top(conf, "vhost", "__defaultVhost__")


@pytest.fixture(scope="module")
def ports(conf: list[Directive]) -> dict[str, int]:
    """What srs.conf listens on."""
    (rtmp,) = top(conf, "listen").args
    return {
        "rtmp": int(rtmp),
        "api": int(top(conf, "http_api").value("listen")),
        "http": int(top(conf, "http_server").value("listen")),
        "rtc": int(top(conf, "rtc_server").value("listen")),
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((KIT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data["services"]


@pytest.fixture(scope="module")
def readme() -> str:
    return (KIT / "README.md").read_text(encoding="utf-8")


def published(service: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """`CONTAINER_PORT/proto` -> (host address or "", host port), from compose's short port syntax."""
    out = {}
    for spec in service.get("ports", []):
        assert isinstance(spec, str), (
            f"quote port mappings in compose files (YAML reads 1935:1935 as a number): {spec!r}"
        )
        mapping, _, proto = spec.partition("/")
        parts = mapping.split(":")
        address = parts[0] if len(parts) == 3 else ""
        out[f"{parts[-1]}/{proto or 'tcp'}"] = (address, int(parts[-2]))
    return out


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


# -- srs.conf -----------------------------------------------------------------------------------------


def test_config_parses_into_the_default_vhost(conf: list[Directive], vhost: Directive) -> None:
    assert vhost.block
    assert top(conf, "daemon").args == ["off"]  # a container's main process stays in the foreground


def test_it_listens_on_the_standard_ports(ports: dict[str, int]) -> None:
    assert ports == {"rtmp": 1935, "api": 1985, "http": 8080, "rtc": 8000}


def test_http_api_and_server_are_on(conf: list[Directive]) -> None:
    assert top(conf, "http_api").value("enabled") == "on"
    assert top(conf, "http_api").value("crossdomain") == "on"  # the players on 8080 call the API
    assert top(conf, "http_server").value("enabled") == "on"


def test_webrtc_is_on_with_a_candidate_from_the_environment(conf: list[Directive]) -> None:
    rtc = top(conf, "rtc_server")
    assert rtc.value("enabled") == "on"
    assert rtc.value("candidate") == "$CANDIDATE"


def test_the_vhost_bridges_webrtc_and_rtmp_both_ways(vhost: Directive) -> None:
    rtc = vhost.get("rtc")
    assert rtc.value("enabled") == "on"
    assert rtc.value("rtc_to_rtmp") == "on"  # a WHIP push plays as FLV/HLS
    assert rtc.value("rtmp_to_rtc") == "on"  # an RTMP push plays over WHEP


def test_http_flv_and_hls_are_on(vhost: Directive) -> None:
    remux = vhost.get("http_remux")
    assert remux.value("enabled") == "on"
    assert remux.value("mount") == "[vhost]/[app]/[stream].flv"
    hls = vhost.get("hls")
    assert hls.value("enabled") == "on"
    # no longer than the broadcaster's GOP (encoder.video.gop_seconds defaults to 2)
    assert float(hls.value("hls_fragment")) <= 2


def test_every_directive_is_one_srs_accepts(conf: list[Directive]) -> None:
    assert unknown(conf) == []


def relay_example(text: str) -> str:
    """The commented relay block of srs.conf, uncommented, inside a default vhost."""
    lines = text.splitlines()
    begin = next(i for i, ln in enumerate(lines) if "relay example: begin" in ln)
    end = next(i for i, ln in enumerate(lines) if "relay example: end" in ln)
    body = [ln.strip().removeprefix("#")[1:] for ln in lines[begin + 1 : end]]
    first = next(i for i, ln in enumerate(body) if ln.startswith("transcode "))
    return "vhost __defaultVhost__ {\n" + "\n".join(body[first:]) + "\n}\n"


def test_the_relay_example_is_valid_once_uncommented() -> None:
    example = parse(relay_example((KIT / "srs.conf").read_text(encoding="utf-8")))
    assert unknown(example) == []
    (vhost,) = example
    transcode = vhost.get("transcode")
    assert transcode.args == [f"{APP}/{STREAM}"]
    engine = transcode.get("engine")
    assert engine.value("vcodec") == engine.value("acodec") == "copy"  # the broadcaster's encode, untouched
    assert urlsplit(engine.value("output")).scheme in ("rtmp", "rtmps")


# -- the parser itself --------------------------------------------------------------------------------


def test_parser_reads_blocks_quotes_and_comments() -> None:
    tree = parse(
        'listen 1935; # rtmp\nheartbeat {\n    device_id "my device";\n    url http://h/a#b;\n}\n'
        "vhost v { rtc { enabled on; } }\n"
    )
    assert [d.name for d in tree] == ["listen", "heartbeat", "vhost"]
    heartbeat = tree[1]
    assert heartbeat.value("device_id") == "my device"
    assert heartbeat.value("url") == "http://h/a#b"  # `#` inside a word is not a comment
    assert tree[2].get("rtc").value("enabled") == "on"
    assert tree[2].get("rtc").line == 6


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("listen 1935;\nhttp_api {\n    enabled on\n    listen 1985;\n}\n", 3, "no ';'"),
        ("vhost v {\n    rtc { enabled on }\n}\n", 2, "no ';' before '}'"),
        ("listen 1935;\nvhost v {\n    hls {\n        enabled on;\n    }\n", 2, "never closed"),
        ("listen 1935;\n}\n", 2, "closes no block"),
        ("listen 1935;\ndaemon off", 2, "no ';'"),
        ('listen 1935;\nheartbeat {\n    device_id "x;\n}\n', 3, "unterminated"),
        ("listen 1935;\n;\n", 2, "no directive"),
    ],
)
def test_parser_rejects_broken_configs_at_their_line(text: str, line: int, says: str) -> None:
    with pytest.raises(ConfigSyntaxError, match=says) as caught:
        parse(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}:")


def test_a_misspelt_directive_is_caught() -> None:
    tree = parse("listen 1935;\nvhost __defaultVhost__ {\n    rtc {\n        rtc_to_rtpm on;\n    }\n}\n")
    assert unknown(tree) == ["line 4: vhost.rtc.rtc_to_rtpm"]
    assert unknown(parse("listn 1935;")) == ["line 1: listn"]


# -- docker-compose.yml and the Dockerfile ------------------------------------------------------------


def test_compose_publishes_what_srs_listens_on(compose: dict[str, Any], ports: dict[str, int]) -> None:
    srs = compose["srs"]
    assert srs["image"].startswith("ossrs/srs:")
    mapped = published(srs)
    for port, proto in (
        (ports["rtmp"], "tcp"),
        (ports["api"], "tcp"),
        (ports["http"], "tcp"),
        (ports["rtc"], "udp"),
    ):
        assert mapped.get(f"{port}/{proto}") == ("", port), f"{port}/{proto} is not published as itself"
    assert "CANDIDATE" in srs["environment"]  # read by `candidate $CANDIDATE;`


def test_compose_runs_srs_with_the_mounted_config(compose: dict[str, Any]) -> None:
    srs = compose["srs"]
    mounts = dict(v.split(":")[:2] for v in srs["volumes"])
    assert posixpath.join(SRS_WORKDIR, option(srs["command"], "-c")) == mounts["./srs.conf"]


def test_the_broadcaster_pushes_to_the_srs_service(compose: dict[str, Any], ports: dict[str, int]) -> None:
    service = compose["broadcaster"]
    target = option(service["command"], "--output")
    assert isinstance(output_from_target(target), RtmpOutputConfig)
    url = urlsplit(target)
    assert url.hostname == "srs"
    assert (url.port or 1935) == ports["rtmp"]
    assert url.path == f"/{APP}/{STREAM}"
    assert "srs" in service["depends_on"]


def test_the_console_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    service = compose["broadcaster"]
    port = ControlConfig().port
    assert published(service) == {f"{port}/tcp": ("127.0.0.1", port)}
    # reachable through the published port only when it listens beyond the container's loopback
    assert option(service["command"], "--set") == "control.host=0.0.0.0"
    assert "BROADCASTER_TOKEN" in service["environment"]


def test_the_image_is_built_as_the_makefile_builds_the_venv(compose: dict[str, Any]) -> None:
    build = compose["broadcaster"]["build"]
    assert (KIT / build["context"]).resolve() == REPO
    dockerfile = (REPO / build["dockerfile"]).read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    steps = [dockerfile.index(s) for s in ("torch==2.13.0", ".[piper]", "--no-deps mediapipe==0.10.21")]
    assert steps == sorted(steps)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    # the sample avatar from the same source as the Makefile's $(SAMPLE) rule
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    (source,) = re.findall(r"avatar build \"\$\$\(\$\(BIN\)/python -c ('[^']+')\)\"", makefile)
    assert f"python -c {source}" in dockerfile
    assert "--name sample" in dockerfile


# -- the page -----------------------------------------------------------------------------------------

URL = re.compile(r"(?:whip\+)?(?:https?|rtmps?)://[^\s`)<>\"|]+")


def host(url: str) -> str | None:
    try:
        return urlsplit(url.removeprefix("whip+")).hostname
    except ValueError:  # a template such as rtmp://HOST[:1935]/APP/STREAM
        return None


def local_urls(readme: str) -> list[str]:
    """The page's URLs of SRS and the console on this machine or in the compose network."""
    return [u.rstrip(".,;") for u in URL.findall(readme) if host(u) in LOCAL_HOSTS]


def test_the_page_urls_use_the_ports_srs_listens_on(
    readme: str, ports: dict[str, int], vhost: Directive
) -> None:
    flv = "/" + vhost.get("http_remux").value("mount").replace("[vhost]/", "").replace("[app]", APP)
    flv = flv.replace("[stream]", STREAM)
    seen = set()
    for raw in local_urls(readme):
        url = urlsplit(raw.removeprefix("whip+"))
        if url.scheme == "rtmp":
            assert (url.port or 1935) == ports["rtmp"], raw
            assert url.path == f"/{APP}/{STREAM}", raw
            seen.add("rtmp")
        elif url.port == ports["api"]:
            kind = url.path.removeprefix("/rtc/v1/").rstrip("/")
            assert kind in ("whip", "whep"), raw
            assert {k: v[0] for k, v in parse_qs(url.query).items() if k in ("app", "stream")} == {
                "app": APP,
                "stream": STREAM,
            }, raw
            seen.add(kind)
        elif url.port == ports["http"]:
            assert url.path in (flv, f"/{APP}/{STREAM}.m3u8") or url.path.startswith("/players/"), raw
            seen.add(url.path.rsplit(".", 1)[-1])
        else:
            assert url.port == ControlConfig().port, f"{raw}: no such port in srs.conf or the compose file"
    assert {"rtmp", "whip", "whep", "flv", "m3u8"} <= seen
    assert f"UDP {ports['rtc']}" in readme


def test_the_page_shows_the_compose_push_url(readme: str, compose: dict[str, Any]) -> None:
    assert option(compose["broadcaster"]["command"], "--output") in readme


def test_the_page_config_snippets_are_valid_config(readme: str) -> None:
    snippets = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(snippets) >= 4
    kinds = set()
    for snippet in snippets:
        config = Config.model_validate(tomllib.loads(snippet))
        kinds |= {o.type for o in config.outputs}
    assert kinds == {"rtmp", "whip"}
    for target in re.findall(r"--output \"?([^\s\"`]+)", readme):
        output_from_target(target)


def test_the_page_shows_keys_redacted_as_the_broadcaster_redacts_them(readme: str) -> None:
    assert redact("rtmps://a.rtmps.youtube.com/live2/xxxx-xxxx-xxxx-xxxx-xxxx") in readme
