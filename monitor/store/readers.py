"""Thread-local read connections of the SQLite run store.

Each thread that reads gets its own ``query_only`` connection, opened on its
first read and closed with the pool. Errors from SQLite during a read become
``StoreUnavailable``; the store's own ``NotFoundError`` passes through.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from monitor.store.base import StoreError, StoreUnavailable
from monitor.store.schema import Database, open_reader


class ReaderPool:
    """One read connection per thread.

    Thread safety: ``connection`` may be called from any number of threads
    at once; ``close`` from any thread, after which reads raise ``StoreError``.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """This thread's read connection, for the duration of one read.

        Raises:
            StoreError: the store is closed.
            StoreUnavailable: SQLite failed to open the database or to read.
        """
        if self._closed:
            raise StoreError(f"run store {self._db.label} is closed; open a new SQLiteStore to read it")
        try:
            yield self._get()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"reading run store {self._db.label} failed: {exc}") from exc

    def _get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self._db)
            with self._lock:
                self._all.append(conn)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close every thread's connection; reads after this raise ``StoreError``."""
        with self._lock:
            self._closed = True
            connections, self._all = self._all, []
        for conn in connections:
            conn.close()
