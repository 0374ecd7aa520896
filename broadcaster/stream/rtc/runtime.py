"""The thread and event loop where every WebRTC peer lives, apart from the show's loop.

Packetising, encrypting and pacing RTP for every WHIP push and preview viewer happens here, so a busy
show loop (an LLM stream, a burst of chat) never delays a packet, and a stuck peer never delays the show.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from broadcaster.stream.rtc.peer import use_host_addresses
from broadcaster.stream.rtc.settings import RtcConfig

log = logging.getLogger(__name__)

T = TypeVar("T")


class RtcRuntime:
    """Owns the ``rtc`` thread and its loop; ``submit`` runs a coroutine there from any thread."""

    def __init__(self, cfg: RtcConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="rtc", daemon=True)

    def start(self) -> None:
        """Start the loop (the ICE address choice applies from now on)."""
        use_host_addresses(self.cfg.host_addresses)
        # aioice and aiortc narrate every candidate pair at INFO: the show's log is not the place
        for name in ("aioice", "aiortc"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the RTC loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the RTC loop and await it from another loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs there, join the loop's executor threads, then stop and close it."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()
            await self.loop.shutdown_default_executor()

        try:
            self.submit(cancel_all()).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("rtc: tasks did not end in %.0f s", timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("rtc: the loop's thread did not end in %.0f s", timeout)
        else:
            self.loop.close()
