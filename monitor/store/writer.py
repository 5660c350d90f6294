"""The run store's writer thread: queue, batches, retry, health, commit reports.

Owns the one write connection. Items are queued without touching disk, taken
by the thread in batches of up to ``batch_max``, and each batch is committed
in one transaction. A batch whose commit fails with ``sqlite3.Error`` (disk
full, I/O error, read-only file; or, should it happen, any other exception)
is rolled back, reported through ``health`` and retried with exponential
backoff until it succeeds, so the order of commits always follows the order
of ``put`` and the thread never dies.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable

from monitor.store.base import CommitListener, StoreHealth
from monitor.store.batch import BatchWriter, Committed, Item, StreamKey

log = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
_CLOSING_ATTEMPTS = 3
_LOG_EVERY = 30


class Writer:
    """One thread that commits queued items in batches.

    Thread safety: ``put`` is called from one producer thread (the event
    loop); ``health``, ``flush``, ``committed``, ``last_seen`` and
    ``set_max_bytes`` from any thread. The connection is used only by the
    writer thread once ``start`` has been called.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        clock: Callable[[], float],
        committed: dict[StreamKey, int],
        batch_max: int,
        max_bytes: int | None,
    ) -> None:
        self._conn = conn
        self._batches = BatchWriter(conn, clock)
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._submitted = self._done = 0
        self._error: str | None = None
        self._closing = False
        self._committed = dict(committed)
        self._last_seen: dict[str, float] = {}
        self._default_pages = int(conn.execute("PRAGMA max_page_count").fetchone()[0])
        self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self._cap: tuple[int | None] | None = (max_bytes,)
        """A size cap not yet applied: ``(bytes,)``, or ``(None,)`` to lift the cap."""
        self._on_commit: CommitListener = _ignore
        self._thread = threading.Thread(target=self._run, name="labscreen-store-writer", daemon=True)

    def start(self, on_commit: CommitListener) -> None:
        """Start the thread; ``on_commit`` is called on it after each commit."""
        self._on_commit = on_commit
        self._thread.start()

    def put(self, item: Item) -> None:
        """Queue one item; never blocks, never touches disk."""
        with self._cond:
            self._submitted += 1
        self._queue.put(item)

    @property
    def healthy(self) -> bool:
        """Whether the last commit attempt succeeded."""
        return self._error is None

    def health(self) -> StoreHealth:
        """Write health and the number of items not yet committed."""
        with self._cond:
            return StoreHealth(ok=self._error is None, queue_depth=self._submitted - self._done, error=self._error)

    def committed(self, key: StreamKey) -> int:
        """Highest durable seq of the stream (0 if none)."""
        with self._cond:
            return self._committed.get(key, 0)

    def last_seen(self, run: str) -> float | None:
        """Store-clock time of the run's last committed frame in this process, if any."""
        with self._cond:
            return self._last_seen.get(run)

    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Cap the database size from the next transaction on (``None``: no cap)."""
        with self._cond:
            self._cap = (max_bytes,)
        self._wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every item put so far is committed; False on timeout."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self) -> None:
        """Commit what is queued, stop the thread and close the connection.

        If writes keep failing, the writer gives up after a few more attempts
        per batch and logs what it drops; those frames were never
        acknowledged, so their producer still holds them and resends them.
        """
        self._closing = True
        self._queue.put(None)
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take()
            if batch:
                self._commit(batch)

    def _take(self) -> tuple[list[Item], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit(self, batch: list[Item]) -> None:
        attempt = 0
        while True:
            self._wake.clear()
            try:
                self._apply_cap()
                committed = self._batches.write(batch)
            except Exception as exc:  # the thread must survive anything; sqlite3.Error is the expected case
                attempt += 1
                if not self._failed(exc, attempt, len(batch)):
                    self._settle(len(batch), None)
                    return
                continue
            if attempt:
                log.warning("run store writes recovered after %d failed attempts", attempt)
            self._settle(len(batch), committed)
            return

    def _failed(self, exc: Exception, attempt: int, size: int) -> bool:
        """Record a failed commit and wait before the next; False to give up."""
        with self._cond:
            self._error = f"{type(exc).__name__}: {exc}"
        if self._closing and attempt >= _CLOSING_ATTEMPTS:
            log.error("run store is closing and writes still fail (%s); %d frames not stored", exc, size)
            return False
        delay = min(_BACKOFF_FIRST * 2 ** (attempt - 1), _BACKOFF_MAX)
        # A lasting failure (a full disk) is logged once and then every _LOG_EVERY attempts, not every retry.
        level = logging.ERROR if attempt % _LOG_EVERY == 1 else logging.DEBUG
        trace = level == logging.ERROR and not isinstance(exc, sqlite3.Error)
        log.log(
            level,
            "run store commit of %d frames failed (%s); retry %d in %.2fs",
            size,
            exc,
            attempt,
            delay,
            exc_info=trace,
        )
        self._wake.wait(0 if self._closing else delay)
        return True

    def _apply_cap(self) -> None:
        with self._cond:
            cap = self._cap
        if cap is None:
            return
        pages = self._default_pages if cap[0] is None else max(1, cap[0] // self._page_size)
        # SQLite never lowers the cap below the pages in use: a small cap freezes the current size.
        self._conn.execute(f"PRAGMA max_page_count = {pages}")
        with self._cond:
            if self._cap is cap:
                self._cap = None

    def _settle(self, size: int, committed: Committed | None) -> None:
        """Publish a batch's outcome: committed, or given up on (``None``)."""
        if committed is None:
            committed = Committed()
        else:
            with self._cond:
                self._error = None
                self._committed.update(committed.seqs)
                self._last_seen.update(dict.fromkeys(committed.runs, committed.wall))
        for (run, stream), seq in committed.seqs.items():
            try:
                self._on_commit(run, stream, seq)
            except Exception:
                log.exception("commit listener failed for run %r stream %r seq %d", run, stream, seq)
        with self._cond:
            self._done += size
            self._cond.notify_all()


def _ignore(run: str, stream: str, seq: int) -> None:
    """The commit listener before ``start``."""
