"""The contract every proxy mode implements, and the thread that runs the
blocking ones.

A proxier turns a ProxyState (servicemap.py) into the node's configuration:

    result = await proxier.sync(state, full=False)   # SyncResult
    await proxier.close()                            # stop serving; rules stay
    await proxier.cleanup()                          # remove what it programmed

`full=True` is the periodic resync: re-read the node's actual state rather
than trusting the proxier's own record of it, and repair drift. iptables and
IPVS proxiers do blocking work (subprocesses, netlink, pyroute2's own event
loop) on one dedicated thread, so the informers' event loop never stalls and
pyroute2's sockets always live on the thread that made them.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass

from kcore.proxy.servicemap import ProxyState


@dataclass(frozen=True)
class SyncResult:
    changed: bool          # something on the node was changed
    ops: int = 0           # commands issued (IPVS/dispatcher ops, 1 per restore)
    pending: int = 0       # quiesced real servers waiting for their connections to end
    detail: str = ""


class Proxier:
    mode = ""

    async def sync(self, state: ProxyState, full: bool = False) -> SyncResult:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    async def cleanup(self) -> None:
        pass


class ThreadedProxier(Proxier):
    """A proxier whose work is blocking: sync_blocking/cleanup_blocking run on
    one worker thread, always the same one."""

    def __init__(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"proxy-{self.mode}")

    def sync_blocking(self, state: ProxyState, full: bool = False) -> SyncResult:
        raise NotImplementedError

    def cleanup_blocking(self) -> None:
        pass

    def close_blocking(self) -> None:
        pass

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def sync(self, state: ProxyState, full: bool = False) -> SyncResult:
        return await self._run(self.sync_blocking, state, full)

    async def cleanup(self) -> None:
        await self._run(self.cleanup_blocking)

    async def close(self) -> None:
        await self._run(self.close_blocking)
        self._pool.shutdown(wait=True)
