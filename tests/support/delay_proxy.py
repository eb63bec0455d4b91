"""A loopback TCP proxy that delays every chunk, to widen the windows where cancellation bites.

A command cancelled while its reply is in flight is exactly where clients have delivered one
caller's reply to another (redis-py CVE-2023-28858/28859). Real Redis on loopback answers too
fast to hit those windows reliably; a few milliseconds of added latency per chunk makes them
wide open.
"""

from __future__ import annotations

import asyncio
import random


class DelayProxy:
    def __init__(
        self, target_port: int, delay: tuple[float, float] = (0.0005, 0.003), seed: int = 1
    ) -> None:
        self.target_port = target_port
        self.delay = delay
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for w in (client_w, server_w):
                w.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            await asyncio.sleep(self._rng.uniform(*self.delay))
            writer.write(chunk)
            await writer.drain()
        writer.close()
