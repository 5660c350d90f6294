"""Importing TensorBoard logs into a run store (``labscreen import-tb``).

Every directory under the log directory that holds ``*tfevents*`` files is
one TensorBoard run, and becomes one labscreen run: named by its path under
the log directory (``train``, ``validation``, ``lr-3e-4/train``), in a
project named after the log directory, finished, started and ended at its
first and last event's wall time. Its run id comes from the directory's
absolute path, so importing the same directory again adds nothing (every
record goes in with the sequence number it had the first time, and the
store ignores a sequence number it has), and an interrupted import picks up
where it stopped.

What is imported: scalars, as TF1 (``simple_value``, also what PyTorch's
``SummaryWriter`` writes) and as TF2 (``tf.summary.scalar``, Keras's
``TensorBoard`` callback) write them; histograms, as TF1 ``HistogramProto``
and TF2 ``[left, right, count]`` tensors. Everything else (images, audio,
text, graphs, other plugins' tensors) is not, and is counted by tag in the
report. A histogram with no values is skipped; one whose buckets all have
zero width (every value the same) becomes one bin one unit wide around it.

Reading event files needs the ``tensorboard`` package (TensorFlow installs
it; ``pip install tensorboard`` otherwise). The store is written directly,
with or without a server running on it (SQLite in WAL mode with a busy
timeout); a running server lists the runs on its next refresh.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.store.sqlite import SQLiteStore
from monitor.wire import Event, Finish, Hello, Histogram, Scalars

log = logging.getLogger(__name__)
STREAM = "import-tb"
"""The stream every imported run is written under."""
CHUNK = 10_000
"""Most points of one scalar tag in one stored message."""
FLUSH_EVERY = 200
"""Messages queued before the import waits for the store's writer."""
Array = np.ndarray[Any, Any]


@dataclass
class ImportReport:
    """What was imported from one TensorBoard run directory."""

    directory: str
    run: str
    name: str
    scalars: int = 0
    """Scalar points."""
    histograms: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    """Tags not imported (or not all of their records), and what they hold: ``"images"``, ``"2 empty histograms"``."""
    already: bool = False
    """Every record was in the store already (imported before)."""


@dataclass(frozen=True)
class _Hist:
    tag: str
    step: int
    wall: float
    edges: Array
    counts: Array
    mean: float | None
    """None: TF2 keeps no sums; estimated from the bins."""
    std: float | None


@dataclass
class _Run:
    scalars: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    histograms: list[_Hist] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def skip(self, tag: str, what: str, records: int | None = 1) -> None:
        """Note records of ``tag`` not imported (``records`` None: not counted)."""
        if records is None:
            self.skipped[tag] = what
            return
        key = (tag, what)
        self._counts[key] = self._counts.get(key, 0) + records
        self.skipped[tag] = f"{self._counts[key]} {what}"

    def walls(self) -> list[float]:
        points = [w for series in self.scalars.values() for _, w, _ in series]
        return points + [h.wall for h in self.histograms]


class _Clock:
    """The store's clock during an import: the wall time of the records being written."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_directories(logdir: Path) -> list[Path]:
    """The directories under ``logdir`` (itself included) that hold event files, sorted."""
    found = {Path(root) for root, _dirs, files in os.walk(logdir) if any("tfevents" in f for f in files)}
    return sorted(found)


def run_id(directory: Path) -> str:
    """The labscreen run id of a TensorBoard run directory: stable across imports."""
    return "tb-" + hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:20]


def import_logdir(store_path: str, logdir: str | os.PathLike[str], project: str | None = None) -> list[ImportReport]:
    """Import every TensorBoard run under ``logdir`` into the store at ``store_path``.

    Raises:
        ImportError: the ``tensorboard`` package is not installed.
        FileNotFoundError: ``logdir`` is not a directory, or holds no event files.
        monitor.store.StoreUnavailable: the store cannot be opened or written.
    """
    root = Path(logdir)
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {root}")
    directories = run_directories(root)
    if not directories:
        raise FileNotFoundError(f"no TensorBoard event files (*tfevents*) under {root}")
    read = _reader()
    clock = _Clock()
    store = SQLiteStore(store_path, clock=clock)
    store.start(lambda _run, _stream, _seq: None)
    try:
        reports = []
        for directory in directories:
            relative = directory.relative_to(root).as_posix()
            name = root.resolve().name if relative == "." else relative
            report = ImportReport(str(directory), run_id(directory), name)
            content = read(directory)
            _write(store, clock, report, content, project or root.resolve().name)
            reports.append(report)
            log.info("imported %s as run %s (%s)", directory, report.run, report.name)
        return reports
    finally:
        store.close()


def _write(store: SQLiteStore, clock: _Clock, report: ImportReport, content: _Run, project: str) -> None:
    report.skipped = dict(content.skipped)
    walls = content.walls()
    if not walls:
        return
    messages = list(_messages(report, content))
    if store.committed_seq(report.run, STREAM) >= len(messages):
        report.already = True  # no Hello either: it would mark the finished run running again
        return
    clock.now = min(walls)
    config = {"imported_from": report.directory}
    store.open_stream(Hello(run=report.run, stream=STREAM, name=report.name, project=project,
                            config=config, framework="tensorboard"))  # fmt: skip
    store.flush(timeout=120)  # committed at the first record's time: the run's start
    for number, (wall, make) in enumerate(messages, start=1):
        clock.now = max(clock.now, wall)
        store.submit(STREAM, make(number))  # False for a record an interrupted import already wrote
        if number % FLUSH_EVERY == 0:
            store.flush(timeout=120)
    store.flush(timeout=120)


def _messages(report: ImportReport, content: _Run) -> Iterator[tuple[float, Callable[[int], Any]]]:
    """Each stored message with the wall time it is written at, made from its sequence number."""
    run = report.run
    for tag in sorted(content.scalars):
        points = sorted(content.scalars[tag])
        report.scalars += len(points)
        for start in range(0, len(points), CHUNK):
            part = points[start : start + CHUNK]
            yield max(p[1] for p in part), _scalars(run, tag, part)
    for histogram in sorted(content.histograms, key=lambda h: (h.wall, h.tag)):
        report.histograms += 1
        yield histogram.wall, _histogram(run, histogram)
    last = max(content.walls())
    last_step = max([p[0] for s in content.scalars.values() for p in s] + [h.step for h in content.histograms])
    text = f"imported from TensorBoard: {report.directory}"
    yield last, lambda seq: Event(run, seq, last_step, last, "info", text)
    yield last, lambda seq: Finish(run, seq, last, "finished")


def _scalars(run: str, tag: str, points: list[tuple[int, float, float]]) -> Callable[[int], Scalars]:
    steps = np.array([p[0] for p in points], dtype=np.int64)
    wall = np.array([p[1] for p in points], dtype=np.float64)
    values = np.array([p[2] for p in points], dtype=np.float64)
    index = np.zeros(len(points), dtype=np.int32)
    return lambda seq: Scalars(run, seq, (tag,), steps, wall, index, values)


def _histogram(run: str, h: _Hist) -> Callable[[int], Histogram]:
    total = float(h.counts.sum())
    mean, std = h.mean, h.std
    if mean is None or std is None:
        centres = (h.edges[:-1] + h.edges[1:]) / 2
        mean = float((centres * h.counts).sum() / total)
        std = math.sqrt(max(0.0, float((h.counts * (centres - mean) ** 2).sum() / total)))
    low, high, count = float(h.edges[0]), float(h.edges[-1]), round(total)
    return lambda seq: Histogram(run, seq, h.tag, h.step, h.wall, h.edges, h.counts, low, high, mean, std, count, 0)


def _reader() -> Callable[[Path], _Run]:
    try:
        from tensorboard.backend.event_processing import event_accumulator
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise ImportError(
            "reading TensorBoard logs needs the tensorboard package: pip install 'labscreen[tensorboard]'"
        ) from exc

    keep_all = {"scalars": 0, "histograms": 0, "tensors": 0, "images": 1, "audio": 1, "compressedHistograms": 1}

    def read(directory: Path) -> _Run:
        acc = event_accumulator.EventAccumulator(str(directory), size_guidance=keep_all)
        acc.Reload()
        tags = acc.Tags()
        run = _Run()
        for tag in tags.get("scalars", []):
            run.scalars[tag] = [(int(e.step), float(e.wall_time), float(e.value)) for e in acc.Scalars(tag)]
        for tag in tags.get("histograms", []):
            for e in acc.Histograms(tag):
                _add_histogram(run, tag, int(e.step), float(e.wall_time), _from_proto(e.histogram_value))
        for tag in tags.get("tensors", []):
            plugin = acc.SummaryMetadata(tag).plugin_data.plugin_name
            for e in acc.Tensors(tag):
                value = tensor_util.make_ndarray(e.tensor_proto)
                step, wall = int(e.step), float(e.wall_time)
                if plugin == "scalars" and value.size == 1 and value.dtype.kind in "biuf":
                    run.scalars.setdefault(tag, []).append((step, wall, float(value.reshape(()))))
                elif plugin == "histograms" and value.ndim == 2 and value.shape[1] == 3:
                    _add_histogram(run, tag, step, wall, _from_buckets(value))
                else:
                    run.skip(tag, f"{plugin or 'untyped'} tensors")
        for kind in ("images", "audio"):
            for tag in tags.get(kind, []):
                run.skip(tag, kind, None)
        if tags.get("graph"):
            run.skip("(graph)", "the model graph", None)
        return run

    return read


Binned = tuple[Array, Array, float | None, float | None] | None
"""Edges, counts, mean and std (None: estimate from the bins), or None for an empty histogram."""


def _add_histogram(run: _Run, tag: str, step: int, wall: float, binned: Binned) -> None:
    if binned is None:
        run.skip(tag, "empty histograms")
    else:
        run.histograms.append(_Hist(tag, step, wall, *binned))


def _from_buckets(buckets: Array) -> Binned:
    """TF2's ``[left, right, count]`` rows as edges and counts."""
    lefts, rights, counts = (np.asarray(buckets[:, i], dtype=np.float64) for i in range(3))
    finite = np.isfinite(lefts) & np.isfinite(rights) & np.isfinite(counts)
    lefts, rights, counts = lefts[finite], rights[finite], np.maximum(counts[finite], 0.0)
    if not len(counts) or counts.sum() <= 0:
        return None
    edges = np.append(lefts, rights[-1])
    if np.all(np.diff(edges) > 0):
        return edges, counts, None, None
    return _one_bin(float(lefts.min()), float(rights.max()), float(counts.sum()))


def _from_proto(proto: Any) -> Binned:
    """TF1's ``HistogramProto`` (bucket ``i`` holds values up to ``bucket_limit[i]``) as edges and counts."""
    limits = np.asarray(proto.bucket_limit, dtype=np.float64)
    counts = np.asarray(proto.bucket, dtype=np.float64)
    used = np.flatnonzero(counts > 0)
    if not len(used) or len(limits) != len(counts) or proto.num <= 0:
        return None
    low, high = float(proto.min), float(proto.max)
    first, last = int(used[0]), int(used[-1])
    inner = limits[first:last]  # the right edges of every used bucket but the last
    edges = np.concatenate(([max(low, float(limits[first - 1])) if first else low], inner, [high]))
    mean = float(proto.sum) / float(proto.num)
    std = math.sqrt(max(0.0, float(proto.sum_squares) / float(proto.num) - mean * mean))
    if not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)):
        return _one_bin(low, high, float(counts.sum()), mean, std)
    return edges, counts[first : last + 1], mean, std


def _one_bin(low: float, high: float, count: float, mean: float | None = None, std: float | None = None) -> Binned:
    """All values in one bin: ``[low, high]``, or one unit wide around a single value."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    if high <= low:
        low, high = low - 0.5, low + 0.5
    return np.array([low, high]), np.array([count]), mean, std
