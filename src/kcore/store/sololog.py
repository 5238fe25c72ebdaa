"""The log of a one-member cluster: an entry is committed once it is durable.

Proposals queue up while the previous batch is being written; each batch is
written to the WAL and fdatasync'ed on one worker thread (group commit: all
the writes of a batch share one fsync), then handed to the apply callback on
the event loop. The next batch's fsync overlaps the previous batch's apply.
A replicated cluster replaces this with the raft node; the server sees the
same two calls (propose, and apply of committed entries).
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from kcore.store.wal import WAL, Entry, HardState

log = logging.getLogger(__name__)


class SoloLog:
    def __init__(self, wal: WAL, term: int, last_index: int, member_id: int,
                 apply: Callable[[list[Entry]], None], max_batch: int = 4096):
        self.wal = wal
        self.term = term
        self.last_index = last_index
        self.member_id = member_id
        self.apply = apply
        self.max_batch = max_batch
        self.pending: list[Entry] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal")
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.fatal: BaseException | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def propose(self, data: bytes) -> int:
        """Queue one entry; returns its log index."""
        self.last_index += 1
        self.pending.append(Entry(self.last_index, self.term, data))
        self._wake.set()
        return self.last_index

    def run_in_wal_thread(self, fn: Callable[[], object]) -> "asyncio.Future":
        """Run fn on the WAL thread, ordered with the writes (snapshots, release)."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn)

    def _take(self) -> list[Entry]:
        batch = self.pending[: self.max_batch]
        del self.pending[: self.max_batch]
        return batch

    def _persist(self, batch: list[Entry]) -> None:
        hs = HardState(term=self.term, vote=self.member_id, commit=batch[-1].index)
        self.wal.save(hs, batch)
        self.wal.sync()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        fut = None
        batch: list[Entry] = []
        try:
            while True:
                if fut is None:
                    while not self.pending:
                        self._wake.clear()
                        await self._wake.wait()
                    batch = self._take()
                    fut = loop.run_in_executor(self.executor, self._persist, batch)
                await fut
                done = batch
                if self.pending:
                    batch = self._take()
                    fut = loop.run_in_executor(self.executor, self._persist, batch)
                else:
                    fut = None
                self.apply(done)
        except asyncio.CancelledError:
            if fut is not None:
                try:
                    await fut
                    self.apply(batch)
                except Exception:  # noqa: BLE001 - shutting down
                    pass
            raise
        except BaseException as e:  # a failed fsync is not survivable: stop accepting writes
            log.critical("write-ahead log failed: %s", e)
            self.fatal = e
            raise

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self.executor.shutdown(wait=True)
