"""Importing TensorBoard logs into a run store (``labscreen import-tb``).

Every directory under the log directory that holds ``*tfevents*`` files is
one TensorBoard run, and becomes one labscreen run: named by its path under
the log directory (``train``, ``validation``, ``lr-3e-4/train``), in a
project named after the log directory, finished, started and ended at its
first and last record's wall time (the store's clock is set to each
record's time as it is written).

What is imported: scalars and histograms, as TF1 writes them (``simple_value``
and ``HistogramProto``; also what PyTorch's ``SummaryWriter`` writes) and as
TF2 does (``tf.summary``, Keras's ``TensorBoard`` callback). The files are
read one record at a time (TFRecord framing, parsed with TensorBoard's own
protobuf classes, without TensorFlow); TF1's histograms are turned into
TF2's form by TensorBoard's own conversion, keeping TF1's exact mean,
standard deviation and count. A scalar point costs 24 bytes of memory until
it is written. Everything else (images, audio, text, graphs, other plugins'
tensors) is not imported, and is named in the report. A histogram with no
values, or with non-finite bucket edges or counts, is skipped and named;
a zero-width bucket (TF's buckets are ``[left, right)``, so a maximum on a
bucket limit makes one) is merged into its neighbour; a histogram whose
buckets all have zero width (every value the same) becomes one bin one unit
wide around the value. A TF2 histogram's mean and standard deviation are
estimated from its bins: TF2's form keeps no sums.

Importing again: the run id comes from the directory's absolute path, and
a series' records at or below the last step the store already has for it
are taken as imported. So importing an unchanged directory again adds
nothing, a log that grew since (a run still training) gets its new records,
and an interrupted import finishes. Steps that go back within a series (a
restart from a checkpoint) are imported as they are the first time, and on
a later import only records above the series' last step are added.

Reading event files needs the ``tensorboard`` package (``pip install
'labscreen[tensorboard]'``; TensorFlow installs it too). The store is written
directly, with or without a server running on it (SQLite in WAL mode with a
busy timeout); a running server lists the runs on its next refresh.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.store.base import NotFoundError, StoreUnavailable
from monitor.store.sqlite import SQLiteStore
from monitor.wire import Event, Finish, Hello, Histogram, Scalars

log = logging.getLogger(__name__)
STREAM = "import-tb"
"""The stream every imported run is written under."""
CHUNK = 10_000
"""Most points of one scalar tag in one stored message."""
FLUSH_EVERY = 200
"""Messages queued before the import waits for the store's writer."""
FLUSH_TIMEOUT = 300.0
Array = np.ndarray[Any, Any]


@dataclass
class ImportReport:
    """What was imported from one TensorBoard run directory."""

    directory: str
    run: str
    name: str
    scalars: int = 0
    """Scalar points written by this import."""
    histograms: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    """Tags not imported (or not all of their records), and what they hold: ``"images"``, ``"2 empty histograms"``."""
    already: bool = False
    """Nothing new: every record was in the store already."""


@dataclass(frozen=True)
class _Hist:
    tag: str
    step: int
    wall: float
    edges: Array
    counts: Array
    low: float
    """The smallest value (an edge, unless every value was the same)."""
    high: float
    sums: tuple[float, float, int] | None = None
    """TF1's exact mean, standard deviation and count; None: estimated from the bins."""


@dataclass
class _Series:
    steps: array[int] = field(default_factory=lambda: array("q"))
    walls: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))


@dataclass
class _Run:
    scalars: dict[str, _Series] = field(default_factory=dict)
    histograms: list[_Hist] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_scalar(self, tag: str, step: int, wall: float, value: float) -> None:
        series = self.scalars.setdefault(tag, _Series())
        series.steps.append(step)
        series.walls.append(wall)
        series.values.append(value)

    def skip(self, tag: str, what: str, counted: bool = True) -> None:
        """Note a record of ``tag`` not imported (``counted`` False: say only what the tag holds)."""
        if not counted:
            self.skipped[tag] = what
            return
        key = (tag, what)
        self._counts[key] = self._counts.get(key, 0) + 1
        self.skipped[tag] = f"{self._counts[key]} {what}"


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

    The store file (and its directory) is created if missing.

    Raises:
        ImportError: the ``tensorboard`` package is not installed (nothing written).
        FileNotFoundError: ``logdir`` is not a directory, or holds no event files.
        monitor.store.StoreUnavailable: the store cannot be opened or written; what was
            committed stays, and importing again finishes the job.
    """
    root = Path(logdir)
    if not root.is_dir():
        raise FileNotFoundError(f"no directory {root}")
    directories = run_directories(root)
    if not directories:
        raise FileNotFoundError(f"no TensorBoard event files (*tfevents*) under {root}")
    read = _reader()
    if store_path != ":memory:":
        Path(store_path).parent.mkdir(parents=True, exist_ok=True)
    clock = _Clock()
    store = SQLiteStore(store_path, clock=clock)
    store.start(lambda _run, _stream, _seq: None)
    try:
        reports = []
        for directory in directories:
            relative = directory.relative_to(root).as_posix()
            name = root.resolve().name if relative == "." else relative
            report = ImportReport(str(directory), run_id(directory), name)
            _write(store, clock, report, read(directory), project or root.resolve().name)
            reports.append(report)
            log.info("imported %s as run %s (%s)", directory, report.run, report.name)
        return reports
    finally:
        store.close()


def _write(store: SQLiteStore, clock: _Clock, report: ImportReport, content: _Run, project: str) -> None:
    report.skipped = dict(content.skipped)
    done, finished = _imported(store, report.run)
    new = _new_records(content, done)
    if not new.scalars and not new.histograms and (finished or not done):
        report.already = bool(done)  # else the logs hold nothing to import
        return
    walls = [float(w.min()) for _, w, _ in new.scalars.values()] + [h.wall for h in new.histograms]
    clock.now = min(walls) if walls else max(w for _, w in done.values())  # else only the finish was missing
    config = {"imported_from": report.directory}
    store.open_stream(Hello(run=report.run, stream=STREAM, name=report.name, project=project,
                            config=config, framework="tensorboard"))  # fmt: skip
    _flush(store)  # committed at the first record's time: the run's start
    seq = store.committed_seq(report.run, STREAM)
    for number, (wall, make) in enumerate(_messages(report, new, clock.now), start=seq + 1):
        clock.now = max(clock.now, wall)
        store.submit(STREAM, make(number))
        seq = number
        if number % FLUSH_EVERY == 0:
            _flush(store)
    _flush(store)
    if store.committed_seq(report.run, STREAM) != seq:
        raise StoreUnavailable(f"run {report.run}: the store did not commit every record; import again to finish")


def _flush(store: SQLiteStore) -> None:
    if not store.flush(timeout=FLUSH_TIMEOUT):
        raise StoreUnavailable(f"the store's writer did not catch up in {FLUSH_TIMEOUT:.0f} s; import again to finish")


def _imported(store: SQLiteStore, run: str) -> tuple[dict[str, tuple[int, float]], bool]:
    """The last step (and its wall time) the store has of each of the run's series, and whether it finished."""
    try:
        info = store.get_run(run)
    except NotFoundError:
        return {}, False
    done: dict[str, tuple[int, float]] = {}
    for name in store.scalar_names(run):
        series = store.scalars(run, name, max_points=2)  # by step: the last point is the last step
        if len(series.steps):
            done["s:" + name] = (int(series.steps[-1]), float(series.wall[-1]))
    for name in store.histogram_names(run):
        latest = store.histograms(run, name, limit=1)
        if latest:
            done["h:" + name] = (latest[-1].step, latest[-1].wall)
    return done, info.status == "finished"


@dataclass
class _New:
    """The records an import writes: per scalar tag its steps, walls and values; the histograms."""

    scalars: dict[str, tuple[Array, Array, Array]] = field(default_factory=dict)
    histograms: list[_Hist] = field(default_factory=list)


def _new_records(content: _Run, done: dict[str, tuple[int, float]]) -> _New:
    """The records above the last step the store has of their series."""
    new = _New()
    for tag, series in content.scalars.items():
        last = done.get("s:" + tag, (None, 0.0))[0]
        steps = np.frombuffer(series.steps, dtype=np.int64)
        keep = slice(None) if last is None else steps > last
        kept = steps[keep]
        if len(kept):
            walls, values = (np.frombuffer(a, dtype=np.float64)[keep] for a in (series.walls, series.values))
            new.scalars[tag] = (kept, walls, values)
    for histogram in content.histograms:
        last = done.get("h:" + histogram.tag, (None, 0.0))[0]
        if last is None or histogram.step > last:
            new.histograms.append(histogram)
    return new


def _messages(report: ImportReport, new: _New, start: float) -> Iterator[tuple[float, Callable[[int], Any]]]:
    """Each stored message with the wall time it is written at, made from its sequence number."""
    run = report.run
    for tag in sorted(new.scalars):
        steps, walls, values = new.scalars[tag]
        report.scalars += len(steps)
        for first in range(0, len(steps), CHUNK):
            part = slice(first, first + CHUNK)
            yield float(walls[part].max()), _scalars(run, tag, steps[part], walls[part], values[part])
    for histogram in new.histograms:
        report.histograms += 1
        yield histogram.wall, _histogram(run, histogram)
    ends_at = [start] + [float(w.max()) for _, w, _ in new.scalars.values()] + [h.wall for h in new.histograms]
    ends = [int(s.max()) for s, _, _ in new.scalars.values()] + [h.step for h in new.histograms]
    last, last_step = max(ends_at), max(ends, default=0)
    text = f"imported from TensorBoard: {report.directory}"
    yield last, lambda seq: Event(run, seq, last_step, last, "info", text)
    yield last, lambda seq: Finish(run, seq, last, "finished")


def _scalars(run: str, tag: str, steps: Array, wall: Array, values: Array) -> Callable[[int], Scalars]:
    index = np.zeros(len(steps), dtype=np.int32)
    return lambda seq: Scalars(run, seq, (tag,), steps, wall, index, values)


def _histogram(run: str, h: _Hist) -> Callable[[int], Histogram]:
    if h.sums is not None:  # TF1's exact sums
        mean, std, count = h.sums
    elif len(h.counts) == 1 and h.low == h.high:  # every value the same
        mean, std, count = h.low, 0.0, round(float(h.counts.sum()))
    else:  # TF2 keeps no sums: estimated from the bins
        total = float(h.counts.sum())
        centres = (h.edges[:-1] + h.edges[1:]) / 2
        mean = float((centres * h.counts).sum() / total)
        std, count = math.sqrt(max(0.0, float((h.counts * (centres - mean) ** 2).sum() / total))), round(total)
    return lambda seq: Histogram(run, seq, h.tag, h.step, h.wall, h.edges, h.counts, h.low, h.high, mean, std, count, 0)


def _reader() -> Callable[[Path], _Run]:
    try:
        from tensorboard import data_compat
        from tensorboard.compat.proto.event_pb2 import Event as EventProto
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise ImportError(
            "reading TensorBoard logs needs the tensorboard package: pip install 'labscreen[tensorboard]'"
        ) from exc

    def read(directory: Path) -> _Run:
        run = _Run()
        plugins: dict[str, str] = {}  # TF2 writes a tag's plugin with its first value only
        files = sorted(p for p in directory.iterdir() if p.is_file() and "tfevents" in p.name)
        for path in files:  # named by creation time: a restarted run's files in order
            for event in _events(path, EventProto.FromString):
                if event.HasField("graph_def") or event.HasField("meta_graph_def"):
                    run.skip("(graph)", "the model graph", counted=False)
                if not event.HasField("summary"):
                    continue
                step, wall = int(event.step), float(event.wall_time)
                for raw in event.summary.value:
                    kind = raw.WhichOneof("value")
                    if kind == "simple_value":  # TF1's scalars (and PyTorch's): no conversion needed
                        run.add_scalar(raw.tag, step, wall, float(raw.simple_value))
                        continue
                    # TF1's histograms as TF2's [left, right, count], by TensorBoard's own rules
                    value = data_compat.migrate_value(raw) if kind == "histo" else raw
                    own = value.metadata.plugin_data.plugin_name
                    if own:
                        plugins[value.tag] = own
                    sums = raw.histo if kind == "histo" else None
                    _read_value(
                        run, value, own or plugins.get(value.tag, ""), (step, wall, sums), tensor_util.make_ndarray
                    )
        return run

    return read


MAX_RECORD = 256 * 1024 * 1024
"""A TFRecord length beyond this is taken for a damaged file (event records are small)."""


def _events(path: Path, parse: Callable[[bytes], Any]) -> Iterator[Any]:
    """The events of one file: TFRecord framing (length, its CRC, data, its CRC), read without TensorFlow.

    The CRCs are not checked (a pure-Python CRC32C would triple the time);
    a damaged record ends the file's reading with a warning, and a record
    still being written (a run that is training) ends it silently.
    """
    with path.open("rb") as file:
        while True:
            header = file.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            if length > MAX_RECORD:
                log.warning("%s: a record of %d bytes; reading stops there (a damaged file?)", path, length)
                return
            data, footer = file.read(length), file.read(4)
            if len(data) < length or len(footer) < 4:
                return
            try:
                yield parse(data)
            except Exception:  # protobuf's DecodeError, and anything a damaged record makes it raise
                log.warning("%s: a record that does not parse; reading stops there (a damaged file?)", path)
                return


def _read_value(
    run: _Run, value: Any, plugin: str, at: tuple[int, float, Any], to_array: Callable[[Any], Array]
) -> None:
    """One TF2 summary value (a tensor and its plugin) at ``at``: step, wall time, TF1's ``HistogramProto``."""
    tag, (step, wall, proto) = value.tag, at
    if value.WhichOneof("value") != "tensor":
        run.skip(tag, value.WhichOneof("value") or "empty values")
        return
    tensor = value.tensor
    if plugin == "scalars" and not tensor.tensor_shape.dim and len(tensor.float_val) + len(tensor.double_val) == 1:
        run.add_scalar(tag, step, wall, float((*tensor.float_val, *tensor.double_val)[0]))  # TF2's usual scalar
        return
    data = to_array(tensor)
    if plugin == "scalars" and data.size == 1 and data.dtype.kind in "biuf":
        run.add_scalar(tag, step, wall, float(data.reshape(())))
    elif plugin == "histograms" and data.ndim == 2 and data.shape[1] == 3 and data.dtype.kind in "biuf":
        binned = _from_buckets(data)
        if isinstance(binned, str):
            run.skip(tag, binned)
        else:
            run.histograms.append(_Hist(tag, step, wall, *binned, sums=_sums(proto)))
    else:
        run.skip(tag, f"{plugin or 'untyped'} tensors")


def _sums(proto: Any) -> tuple[float, float, int] | None:
    """Mean, standard deviation and count from a TF1 ``HistogramProto``'s exact sums (TF2's form has none)."""
    if proto is None or not proto.num > 0 or not math.isfinite(proto.sum) or not math.isfinite(proto.sum_squares):
        return None
    mean = proto.sum / proto.num
    return mean, math.sqrt(max(0.0, proto.sum_squares / proto.num - mean * mean)), round(proto.num)


def _from_buckets(buckets: Array) -> tuple[Array, Array, float, float] | str:
    """TF2's ``[left, right, count]`` rows as edges, counts, min and max; or why they cannot be."""
    lefts, rights, counts = (np.asarray(buckets[:, i], dtype=np.float64) for i in range(3))
    if not (np.isfinite(lefts).all() and np.isfinite(rights).all() and np.isfinite(counts).all()):
        return "histograms with non-finite values"
    counts = np.maximum(counts, 0.0)
    if not len(counts) or counts.sum() <= 0:
        return "empty histograms"
    low, high = float(lefts.min()), float(rights.max())
    wide = rights > lefts
    if not wide.any():  # every value the same
        return np.array([low - 0.5, low + 0.5]), np.array([counts.sum()]), low, low
    merged = counts[wide].copy()
    owner = np.maximum(np.cumsum(wide) - 1, 0)  # a zero-width bucket joins the wide one before it (or after, first)
    np.add.at(merged, owner[~wide], counts[~wide])
    edges = np.append(lefts[wide], rights[wide][-1])
    if not np.all(np.diff(edges) > 0):
        return "histograms with overlapping buckets"
    return edges, merged, low, high
