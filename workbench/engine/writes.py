"""Store writes off the event loop: while a session's bar loop runs, its writes go to a writer thread.

SQLite lets one writer in at a time; a write waits for the lock (up to the busy timeout, then
retries). Waiting on the event loop would stall every session of a host and the stop checks of its
own bars. So while the bars run, a session's store is a :class:`PostingStore`: the writes named in
:data:`POSTED` are handed, in call order, to one thread per :class:`~workbench.store.Store` object
(:func:`writer_for`) and return at once; reads are the store's own (WAL readers never wait for the
writer). A posted write that fails reaches ``on_error`` on the event loop (a lost lease, a storage
fault, a bug), and :meth:`PostingStore.drain` waits until everything posted is written, before the
session's last writes and reads. Before and after the bar loop the writes are direct again. Each posted
write's duration goes to ``write_times`` (the session's profiler drains it).
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from workbench.store import Store

#: the store methods a running session posts instead of waiting for (their return values are unused)
POSTED = frozenset({"add_event", "finish_command", "set_state", "update_session", "save_checkpoint",
                    "save_trades", "upsert_order"})
_LOCK = threading.Lock()


def writer_for(store: Store) -> cf.ThreadPoolExecutor:
    """The one writer thread of ``store`` (made on first use): its jobs run in submission order."""
    with _LOCK:
        pool = store.__dict__.get("_writer_thread")
        if pool is None:
            pool = store.__dict__["_writer_thread"] = cf.ThreadPoolExecutor(1, thread_name_prefix="workbench-store")
        return pool


class PostingStore:
    """``store`` with the writes in :data:`POSTED` posted to its writer thread while ``active``."""

    def __init__(self, store: Store, on_error: Callable[[BaseException], None]):
        self.store = store
        self.active = False
        self._on_error = on_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last: cf.Future[Any] | None = None
        self._checkpoint: cf.Future[Any] | None = None
        self.write_times: deque[float] = deque(maxlen=10_000)  # seconds per posted write, oldest dropped

    def start(self) -> None:
        """Post from now on; failures are reported on the running loop."""
        self._loop = asyncio.get_running_loop()
        self.active = True

    def post(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the writer thread after what was posted before."""
        fut = writer_for(self.store).submit(self._timed, fn, args, kwargs)
        fut.add_done_callback(self._done)
        self._last = fut
        return fut

    def _timed(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.write_times.append(time.perf_counter() - began)

    def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Run a read on the writer thread after what was posted (the caller awaits it and handles its
        error; nothing is reported to ``on_error``)."""
        return writer_for(self.store).submit(fn, *args, **kwargs)

    def checkpoint_in_flight(self) -> bool:
        """A posted checkpoint is not written yet (a new one would only queue behind it)."""
        return self.active and self._checkpoint is not None and not self._checkpoint.done()

    def _done(self, fut: cf.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is None or self._loop is None:
            return
        err = fut.exception()
        assert err is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the session is over
            self._loop.call_soon_threadsafe(self._on_error, err)

    def drain(self) -> None:
        """Stop posting and wait (blocking) until everything posted has been tried."""
        self.active = False
        last = self._last
        if last is not None:
            cf.wait([last])

    async def drain_async(self) -> None:
        """Wait (on the loop) until everything posted has been tried, then stop posting. Posting goes on
        while it waits (the poll task may checkpoint meanwhile): a write made direct before the queue is
        empty would overtake the posted ones (a checkpoint committed ahead of the fills it counts)."""
        while (last := self._last) is not None and not last.done():
            await asyncio.wait([asyncio.wrap_future(last)])
        self.active = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if name not in POSTED or not self.active:
            return attr

        def posted(*args: Any, **kwargs: Any) -> None:
            fut = self.post(attr, *args, **kwargs)
            if name == "save_checkpoint":
                self._checkpoint = fut

        return posted
