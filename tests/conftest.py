from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import matplotlib.cbook
import pytest
from hypothesis import HealthCheck, settings

from broadcaster.face.builder import build_avatar

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grace_hopper() -> Path:
    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


# the property tests (tests/test_bad_input_*): the same 100 examples every run, however slow the machine
settings.register_profile(
    "broadcaster",
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("broadcaster")


@pytest.fixture(scope="session")
def avatar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("avatars")
    build_avatar(grace_hopper(), "sample", root)
    return root


class NginxRtmp:
    """A real nginx with the RTMP module on loopback, recording every published stream."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.stat_port = free_port()
        self.record_dir = workdir / "rec"
        self.record_dir.mkdir()
        (workdir / "logs").mkdir()
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(f"""
load_module {RTMP_MODULE};
daemon off;
master_process off;
error_log {workdir}/logs/error.log info;
pid {workdir}/nginx.pid;
events {{ worker_connections 64; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.port};
    application live {{
      live on;
      record all;
      record_path {self.record_dir};
      record_unique on;
    }}
  }}
}}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{self.stat_port};
    location /stat {{ rtmp_stat all; }}
    location /control {{ rtmp_control all; }}
  }}
}}
""")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/test"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.workdir), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def stop(self) -> None:
        """Stop gracefully (SIGQUIT: the recordings are closed), killing it if it lingers."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def drop_publisher(self, name: str = "test") -> int:
        """Drop the publisher of ``live/name`` as a lost connection would (the control module); how many
        were dropped."""
        url = f"http://127.0.0.1:{self.stat_port}/control/drop/publisher?app=live&name={name}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.read().decode() or 0)

    def recordings(self) -> list[Path]:
        return sorted(p for p in self.record_dir.glob("*.flv") if p.stat().st_size > 0)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxRtmp]:
    if shutil.which("nginx") is None or not RTMP_MODULE.exists():
        if os.environ.get("CI"):
            pytest.fail("nginx with libnginx-mod-rtmp is required in CI (make test installs it)")
        pytest.skip("nginx-light + libnginx-mod-rtmp not installed (make test installs them)")
    server = NginxRtmp(tmp_path / "nginx")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.kill()


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    """aioice never offers 127.0.0.1 on its own: pin it for both peers of a test, then let go."""
    from broadcaster.stream.rtc.peer import use_host_addresses  # noqa: PLC0415 (imports aiortc)

    use_host_addresses(["127.0.0.1"])
    yield
    use_host_addresses([])


@pytest.fixture(scope="session")
def local_llm() -> Iterator[str]:
    """The bundled SmolLM2 model served by a real llama_cpp.server on loopback; yields its base URL."""
    from broadcaster.config import LlmConfig  # noqa: PLC0415
    from broadcaster.show.local_llm import LocalLlmServer  # noqa: PLC0415

    server = LocalLlmServer(LlmConfig(local_threads=1))
    url = server.start_blocking()
    yield url
    server.close_blocking()
