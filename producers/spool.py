"""The producer's buffer of unacknowledged frames: bounded memory, bounded spool.

``FrameBuffer`` holds encoded frames with consecutive sequence numbers until
the server acknowledges them. The newest frames stay in memory up to
``max_memory_bytes``; older ones spill to append-only segment files of the
spool, up to ``max_spool_bytes`` on disk. When both are full the oldest
frames are dropped, a whole segment (about an eighth of the spool) at a time,
and counted in ``dropped``.

Spool segment format: a sequence of records, each a 12-byte little-endian
header (uint64 seq, uint32 length) followed by the frame's bytes. The index
of every segment is kept in memory; the header lets a read verify it. A
segment file is deleted as soon as every frame in it is acknowledged or
dropped, so a spool whose frames are all acknowledged occupies no disk.

``Ledger`` keeps the books over a buffer (acknowledged, refused, dropped,
outstanding) and produces the ``DeliveryReport``.

Thread safety: none; the producer's background thread owns both.
"""

from __future__ import annotations

import logging
import struct
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

_RECORD = struct.Struct("<QI")
_SEGMENTS = 8


class _Segment:
    """One spool file: records for consecutive seqs ``first .. first + len - 1``."""

    def __init__(self, path: Path, first: int) -> None:
        self.path = path
        self.file: BinaryIO = path.open("w+b")
        self.first = first
        self.start = 0
        self.offsets: list[int] = []
        self.lengths: list[int] = []
        self.size = 0

    @property
    def last(self) -> int:
        return self.first + len(self.offsets) - 1

    @property
    def live(self) -> int:
        """Frames in this segment not yet released."""
        return len(self.offsets) - self.start

    def append(self, seq: int, data: bytes) -> None:
        """Write one record; ``seq`` must follow the segment's last seq."""
        assert seq == self.first + len(self.offsets), "spool segment seqs must be consecutive"
        self.file.seek(self.size)
        self.file.write(_RECORD.pack(seq, len(data)))
        self.file.write(data)
        self.offsets.append(self.size)
        self.lengths.append(len(data))
        self.size += _RECORD.size + len(data)

    def read(self, seq: int) -> bytes:
        i = seq - self.first
        self.file.flush()
        self.file.seek(self.offsets[i])
        header = self.file.read(_RECORD.size)
        data = self.file.read(self.lengths[i])
        if (
            len(header) < _RECORD.size
            or _RECORD.unpack(header) != (seq, self.lengths[i])
            or len(data) != self.lengths[i]
        ):
            raise OSError(f"spool segment {self.path} is corrupt at seq {seq}")
        return data

    def delete(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class FrameBuffer:
    """Unacknowledged frames in seq order: older ones on disk, newer in memory.

    Invariants: held seqs are exactly ``first_seq .. last_seq``; every
    spooled seq is older than every in-memory seq; ``memory_bytes <=
    max_memory_bytes`` and ``spool_bytes <= max_spool_bytes`` after every
    call. Disk errors never raise: the frames they affect are dropped,
    counted and logged once.
    """

    def __init__(
        self, max_memory_bytes: int, max_spool_bytes: int, spool_dir: Path | None = None, prefix: str = "labscreen"
    ) -> None:
        """Create an empty buffer; no file is touched until a frame spills.

        Args:
            max_memory_bytes: Most frame bytes kept in memory.
            max_spool_bytes: Most bytes on disk (0 disables the spool).
            spool_dir: Directory for segment files; a private temporary
                directory (removed by ``close``) when None.
            prefix: File name prefix of the segment files.
        """
        self.max_memory_bytes = max_memory_bytes
        self.max_spool_bytes = max_spool_bytes
        self.dropped = 0
        self._dir = spool_dir
        self._own_dir: Path | None = None
        self._prefix = prefix
        self._memory: deque[tuple[int, bytes]] = deque()
        self.memory_bytes = 0
        self._segments: deque[_Segment] = deque()
        self._files = 0
        self._next_seq = 1
        self._disk_warned = False

    def __len__(self) -> int:
        return self._next_seq - self.first_seq

    @property
    def first_seq(self) -> int:
        """Oldest held seq; equals ``last_seq + 1`` when empty."""
        if self._segments:
            return self._segments[0].first + self._segments[0].start
        return self._memory[0][0] if self._memory else self._next_seq

    @property
    def last_seq(self) -> int:
        """Newest seq ever appended (0 before the first)."""
        return self._next_seq - 1

    @property
    def spool_bytes(self) -> int:
        """Bytes currently in spool files, record headers included."""
        return sum(segment.size for segment in self._segments)

    @property
    def spool_files(self) -> list[Path]:
        """Paths of the segment files that exist now, oldest first."""
        return [segment.path for segment in self._segments]

    def append(self, seq: int, data: bytes) -> None:
        """Hold a new frame; may spill older frames to disk or drop the oldest.

        Raises:
            ValueError: ``seq`` is not ``last_seq + 1``.
        """
        if seq != self._next_seq:
            raise ValueError(f"seq {seq} appended after {self._next_seq - 1}; seqs must be consecutive")
        self._next_seq += 1
        self._memory.append((seq, data))
        self.memory_bytes += len(data)
        while self.memory_bytes > self.max_memory_bytes:
            old_seq, old = self._memory.popleft()
            self.memory_bytes -= len(old)
            self._spill(old_seq, old)

    def get(self, seq: int) -> bytes | None:
        """The frame with this seq, or None if it is not held (acked, dropped or unread)."""
        if not self.first_seq <= seq <= self.last_seq:
            return None
        if self._memory and seq >= self._memory[0][0]:
            return self._memory[seq - self._memory[0][0]][1]
        segment = next(s for s in self._segments if s.first + s.start <= seq <= s.last)
        try:
            return segment.read(seq)
        except OSError as exc:
            self._disk_failed(exc)
            while self._segments and self._segments[0].first <= seq:
                self._drop_oldest_segment()
            return None

    def release_through(self, seq: int) -> range:
        """Forget every frame with a seq up to ``seq`` (acknowledged by the server).

        Returns:
            The seqs released, possibly empty.
        """
        released = range(self.first_seq, min(seq, self.last_seq) + 1)
        while self._segments and self._segments[0].last <= seq:
            self._segments.popleft().delete()
        if self._segments and self._segments[0].first + self._segments[0].start <= seq:
            self._segments[0].start = seq - self._segments[0].first + 1
        while self._memory and self._memory[0][0] <= seq:
            self.memory_bytes -= len(self._memory.popleft()[1])
        return released

    def close(self) -> None:
        """Forget every frame and delete the spool files (and a private spool directory)."""
        while self._segments:
            self._segments.popleft().delete()
        self._memory.clear()
        self.memory_bytes = 0
        if self._own_dir is not None:
            for path in self._own_dir.glob(f"{self._prefix}-*.spool"):
                path.unlink(missing_ok=True)
            self._own_dir.rmdir()
            self._own_dir = None

    def _spill(self, seq: int, data: bytes) -> None:
        need = _RECORD.size + len(data)
        if need > self.max_spool_bytes:
            self._drop_spool_and(1)
            return
        while self._segments and self.spool_bytes + need > self.max_spool_bytes:
            self._drop_oldest_segment()
        try:
            self._tail(seq).append(seq, data)
        except OSError as exc:
            self._disk_failed(exc)
            self._drop_spool_and(1)

    def _tail(self, seq: int) -> _Segment:
        tail = self._segments[-1] if self._segments else None
        if tail is None or tail.size >= max(1, self.max_spool_bytes // _SEGMENTS):
            self._files += 1
            tail = _Segment(self._directory() / f"{self._prefix}-{self._files:06d}.spool", seq)
            self._segments.append(tail)
        return tail

    def _directory(self) -> Path:
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            return self._dir
        if self._own_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="labscreen-spool-"))
        return self._own_dir

    def _drop_oldest_segment(self) -> None:
        segment = self._segments.popleft()
        self._count_dropped(segment.live)
        segment.delete()

    def _drop_spool_and(self, count: int) -> None:
        """Drop every spooled frame plus ``count`` frames being spilled.

        Seqs must stay consecutive, so a frame that cannot be spooled takes
        every older frame with it.
        """
        while self._segments:
            self._drop_oldest_segment()
        self._count_dropped(count)

    def _count_dropped(self, count: int) -> None:
        if count and not self.dropped:
            logger.warning(
                "labscreen: the unacknowledged-frame buffer is full (%d bytes in memory, %d on disk); "
                "dropping the oldest frames until the server is reachable again",
                self.max_memory_bytes,
                self.max_spool_bytes,
            )
        self.dropped += count

    def _disk_failed(self, exc: OSError) -> None:
        if not self._disk_warned:
            self._disk_warned = True
            logger.warning("labscreen: spool file error (%s); frames kept on disk are lost", exc)


@dataclass(frozen=True)
class DeliveryReport:
    """What became of a run's frames when its Monitor finished.

    Invariant: ``frames == acked + refused + dropped + undelivered``.

    Attributes:
        run: The run id.
        frames: Frames produced (``hello`` not counted).
        sent: Frames sent at least once.
        acked: Frames the server confirmed persisted.
        refused: Frames the server (or the encoder) refused; never resent.
        dropped: Oldest frames dropped because buffer and spool were full.
        undelivered: Frames still unacknowledged at the end.
        discarded: Calls (``log``, ``histogram``...) discarded before they
            became frames, because the caller outran the background thread
            by more than ``MAX_QUEUED_ITEMS``; not counted in ``frames``.
        unframed: Calls still waiting to become frames when ``finish``
            stopped waiting, because the background thread was busy (binning
            a huge histogram); discarded, not counted in ``frames``.
    """

    run: str
    frames: int
    sent: int
    acked: int
    refused: int
    dropped: int
    undelivered: int
    discarded: int = 0
    unframed: int = 0


class Ledger:
    """What became of each frame: seqs, acknowledgements, refusals and drops over a ``FrameBuffer``.

    Invariant: ``frames == acked + refused + dropped + outstanding``. A
    refused frame is settled (never resent) but stays in the buffer until an
    acknowledgement passes it, so that seqs stay consecutive.

    Thread safety: none; the producer's background thread owns it.
    """

    def __init__(self, buffer: FrameBuffer) -> None:
        self.buffer = buffer
        self.frames = 0
        self.acked = 0
        self.refused = 0
        self._held_refused: set[int] = set()
        self._dropped_refused = 0

    @property
    def next_seq(self) -> int:
        """The seq the next frame gets."""
        return self.buffer.last_seq + 1

    @property
    def dropped(self) -> int:
        """Frames dropped unacknowledged and unrefused because buffer and spool were full."""
        return self.buffer.dropped - self._dropped_refused

    @property
    def outstanding(self) -> int:
        """Frames neither acknowledged, refused nor dropped.

        Computed from counters only, so that another thread may read it
        (roughly) while the owner updates the buffer.
        """
        return max(0, self.frames - self.acked - self.refused - self.dropped)

    @property
    def refused_held(self) -> int:
        """Refused frames still held (until an acknowledgement passes them)."""
        return len(self._held_refused)

    def is_refused(self, seq: int) -> bool:
        """Whether the server refused this held frame (so it must not be resent)."""
        return seq in self._held_refused

    def add(self, data: bytes) -> None:
        """Hold a new frame under ``next_seq``; may drop the oldest frames."""
        self.frames += 1
        self.buffer.append(self.next_seq, data)
        lost = {seq for seq in self._held_refused if seq < self.buffer.first_seq}
        self._held_refused -= lost
        self._dropped_refused += len(lost)

    def unbuildable(self) -> None:
        """Count a frame that could not even be encoded: refused locally, never held."""
        self.frames += 1
        self.refused += 1

    def acknowledge(self, seq: int) -> None:
        """The server persisted every frame up to ``seq``: forget them."""
        released = self.buffer.release_through(seq)
        settled = {s for s in self._held_refused if s in released}
        self._held_refused -= settled
        self.acked += len(released) - len(settled)

    def report(self, run: str, sent: int, discarded: int = 0, unframed: int = 0) -> DeliveryReport:
        """The counts so far as a ``DeliveryReport``; ``sent``, ``discarded`` and ``unframed`` are the sender's."""
        return DeliveryReport(
            run, self.frames, sent, self.acked, self.refused, self.dropped, self.outstanding, discarded, unframed
        )

    def refuse(self, seq: int) -> bool:
        """The server refused a frame; False if it is not held or was refused already."""
        if not self.buffer.first_seq <= seq <= self.buffer.last_seq or seq in self._held_refused:
            return False
        self._held_refused.add(seq)
        self.refused += 1
        return True
