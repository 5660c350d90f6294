"""The run store interface: what ingest writes and what readers may ask.

The store imports neither Tornado nor Bokeh. Writes (``open_stream``,
``submit``) are cheap, non-blocking calls made from the server's event loop;
the implementation persists them on its own writer thread and reports each
durable sequence number through the commit listener. Reads block on disk and
are meant to run off the event loop (in an executor). Records read back are
the wire protocol's own message classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from monitor.wire import DataMessage, DataSummary, Event, Graph, Hello, Histogram, Predictions

RunStatus = Literal["running", "finished", "crashed", "stale"]
CommitListener = Callable[[str, str, int], None]
"""Called as ``listener(run, stream, seq)`` on the writer thread after a commit."""


class StoreError(Exception):
    """Base class of the store's errors."""


class NotFoundError(StoreError):
    """A run or series that the store does not have; the message names it."""


class StoreUnavailable(StoreError):
    """The store cannot accept writes now (disk failing); retry later."""


@dataclass(frozen=True)
class RunInfo:
    """One run as the store knows it; ``status`` already accounts for staleness."""

    id: str
    name: str
    project: str
    status: RunStatus
    started: float
    last_seen: float
    finished: float | None = None
    last_step: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    framework: str = ""
    rank: int = 0
    world_size: int = 1


@dataclass(frozen=True, eq=False)
class ScalarSeries:
    """One scalar series, ordered by step: int64 steps, float64 wall and values."""

    run: str
    name: str
    steps: np.ndarray[Any, Any]
    wall: np.ndarray[Any, Any]
    values: np.ndarray[Any, Any]


@dataclass(frozen=True)
class StoreHealth:
    """Whether writes are succeeding, and how much waits to be written."""

    ok: bool
    queue_depth: int
    error: str | None = None


class RunStore(Protocol):
    """Persistent store of runs. Writes never block; reads may.

    Thread safety: ``open_stream``, ``submit`` and ``committed_seq`` are
    called from one thread (the event loop). Read methods may be called from
    any thread, concurrently.
    """

    def start(self, on_commit: CommitListener) -> None:
        """Start the writer; ``on_commit`` hears of every durable seq."""

    def close(self) -> None:
        """Write everything queued, stop the writer, close files."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything submitted so far is committed; False on timeout."""

    def health(self) -> StoreHealth:
        """Current write health and queue depth (cheap, never blocks)."""

    def open_stream(self, hello: Hello) -> int:
        """Register (or resume) a run and stream; return its last committed seq.

        Raises:
            StoreUnavailable: the store is not accepting writes.
        """

    def submit(self, stream: str, message: DataMessage) -> bool:
        """Queue a frame for writing; False if its seq was already accepted.

        Raises:
            StoreUnavailable: the store is not accepting writes; nothing queued.
            NotFoundError: the run/stream was never opened with ``open_stream``.
        """

    def committed_seq(self, run: str, stream: str) -> int:
        """Highest seq of the stream known durable (0 if none)."""

    def list_runs(self) -> list[RunInfo]:
        """All runs, newest first."""

    def get_run(self, run: str) -> RunInfo:
        """One run. Raises ``NotFoundError``."""

    def scalar_names(self, run: str) -> list[str]:
        """Names of the run's scalar series, sorted. Raises ``NotFoundError``."""

    def scalars(
        self,
        run: str,
        name: str,
        start: int | None = None,
        end: int | None = None,
        max_points: int | None = None,
    ) -> ScalarSeries:
        """A series within [start, end] steps, decimated to ``max_points``.

        Raises:
            NotFoundError: unknown run, or no such series in the run.
        """

    def histogram_names(self, run: str) -> list[str]:
        """Names of the run's histogram series. Raises ``NotFoundError``."""

    def histograms(
        self, run: str, name: str, start: int | None = None, end: int | None = None, limit: int | None = None
    ) -> list[Histogram]:
        """Histograms by ascending step; ``limit`` keeps the latest N. Raises ``NotFoundError``."""

    def predictions(self, run: str, name: str | None = None, limit: int = 1) -> list[Predictions]:
        """The latest ``limit`` predictions (ascending step). Raises ``NotFoundError`` for an unknown run."""

    def graph(self, run: str) -> Graph | None:
        """The run's model graph, if sent. Raises ``NotFoundError`` for an unknown run."""

    def data_summaries(self, run: str) -> list[DataSummary]:
        """The latest data summary per name. Raises ``NotFoundError`` for an unknown run."""

    def events(self, run: str, limit: int = 100) -> list[Event]:
        """The latest ``limit`` events, newest first. Raises ``NotFoundError`` for an unknown run."""
