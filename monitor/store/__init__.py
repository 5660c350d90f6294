"""The run store: the ``RunStore`` interface and its default SQLite implementation.

``monitor.store.base`` defines the interface, its errors and read types;
``SQLiteStore`` (``monitor.store.sqlite``) is the embedded default.
"""

from __future__ import annotations

from monitor.store.base import (
    CommitListener,
    NotFoundError,
    RunInfo,
    RunStatus,
    RunStore,
    ScalarSeries,
    StoreError,
    StoreHealth,
    StoreUnavailable,
)
from monitor.store.sqlite import SQLiteStore

__all__ = [
    "CommitListener",
    "NotFoundError",
    "RunInfo",
    "RunStatus",
    "RunStore",
    "SQLiteStore",
    "ScalarSeries",
    "StoreError",
    "StoreHealth",
    "StoreUnavailable",
]
