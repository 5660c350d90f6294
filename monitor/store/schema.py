"""The SQLite schema of the run store and how its connections are opened.

Owns the table definitions, the pragmas of the writer and reader connections
and the mapping from a store path (or ``":memory:"``) to a database URI.
Every array column is a triple ``<name> BLOB, <name>_dtype TEXT,
<name>_shape TEXT`` (see ``monitor.store.blobs``), except the fixed-dtype
arrays of ``scalar_chunks`` (see ``monitor.store.chunks``).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 5000


def _arrays(*names: str) -> str:
    return ", ".join(f"{n} BLOB, {n}_dtype TEXT, {n}_shape TEXT" for n in names)


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, project TEXT NOT NULL, config TEXT NOT NULL,
    host TEXT NOT NULL, framework TEXT NOT NULL, rank INTEGER NOT NULL, world_size INTEGER NOT NULL,
    status TEXT NOT NULL, started REAL NOT NULL, last_seen REAL NOT NULL, finished REAL, last_step INTEGER
);
CREATE TABLE IF NOT EXISTS streams (
    run TEXT NOT NULL, stream TEXT NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    UNIQUE (run, kind, name)
);
CREATE TABLE IF NOT EXISTS scalar_chunks (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, first_step INTEGER NOT NULL, last_step INTEGER NOT NULL,
    count INTEGER NOT NULL, steps BLOB NOT NULL, wall BLOB NOT NULL, value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS scalar_chunks_by_step ON scalar_chunks (series_id, last_step, first_step);
CREATE TABLE IF NOT EXISTS histograms (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, wall REAL,
    {_arrays("edges", "counts")}, min REAL, max REAL, mean REAL, std REAL, count INTEGER, nonfinite INTEGER
);
CREATE INDEX IF NOT EXISTS histograms_by_step ON histograms (series_id, step);
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, wall REAL,
    task TEXT NOT NULL, classes TEXT NOT NULL, {_arrays("y_true", "outputs", "embedding")}
);
CREATE INDEX IF NOT EXISTS predictions_by_step ON predictions (series_id, step);
CREATE TABLE IF NOT EXISTS graphs (
    run TEXT PRIMARY KEY, seq INTEGER NOT NULL, nodes TEXT NOT NULL, edges TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS data_summaries (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, wall REAL,
    feature_names TEXT NOT NULL, label_names TEXT NOT NULL, sample_names TEXT NOT NULL,
    {_arrays("edges", "counts", "label_counts", "sample", "sample_labels")}
);
CREATE INDEX IF NOT EXISTS data_summaries_by_step ON data_summaries (series_id, step);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, run TEXT NOT NULL, seq INTEGER NOT NULL, step INTEGER NOT NULL, wall REAL,
    level TEXT NOT NULL, text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run, id);
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass(frozen=True)
class Database:
    """Where a store lives: the URI every connection opens, and whether it is in memory."""

    uri: str
    memory: bool
    label: str

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Database:
        """The database for a file path, or a private shared-cache one for ``":memory:"``."""
        if os.fspath(path) == ":memory:":
            return cls(f"file:labscreen-{uuid.uuid4().hex}?mode=memory&cache=shared", True, ":memory:")
        resolved = Path(path).resolve()
        return cls(f"{resolved.as_uri()}?mode=rwc", False, str(resolved))

    def connect(self) -> sqlite3.Connection:
        """A new autocommit connection usable from any one thread at a time.

        Raises:
            sqlite3.Error: the database cannot be opened.
        """
        conn = sqlite3.connect(self.uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn


def open_writer(db: Database) -> sqlite3.Connection:
    """Open the one write connection: WAL, synchronous=NORMAL, schema created.

    Raises:
        sqlite3.Error: the file cannot be opened, or the schema not created.
        sqlite3.DatabaseError: the file holds another version of the schema.
    """
    conn = db.connect()
    try:
        _check_version(conn, db)
        if not db.memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _check_version(conn: sqlite3.Connection, db: Database) -> None:
    """Refuse a file written with another schema version (0 is a new, empty file)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version not in (0, SCHEMA_VERSION):
        raise sqlite3.DatabaseError(
            f"{db.label} has run store schema version {version}, this labscreen writes version {SCHEMA_VERSION};"
            " use a new store file"
        )


def open_reader(db: Database) -> sqlite3.Connection:
    """Open a read-only (``query_only``) connection.

    An in-memory store shares one cache between connections, where a reader
    would otherwise be refused while the writer holds a table lock; there
    readers use ``read_uncommitted`` and may see a batch just before it
    commits.

    Raises:
        sqlite3.Error: the database cannot be opened.
    """
    conn = db.connect()
    conn.execute("PRAGMA query_only = ON")
    if db.memory:
        conn.execute("PRAGMA read_uncommitted = ON")
    return conn
