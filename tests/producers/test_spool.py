"""Unit tests of the bounded unacknowledged-frame buffer and its spool files."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producers.spool import FrameBuffer, Ledger

Factory = Callable[..., FrameBuffer]


@pytest.fixture
def make() -> Iterator[Factory]:
    """Make buffers and close every one of them (closing their spool files) at teardown."""
    made: list[FrameBuffer] = []

    def factory(*args: object) -> FrameBuffer:
        made.append(FrameBuffer(*args))  # type: ignore[arg-type]
        return made[-1]

    yield factory
    for buffer in made:
        buffer.close()


def frame(seq: int, size: int = 100) -> bytes:
    return (seq.to_bytes(8, "little") * (size // 8 + 1))[:size]


def fill(buffer: FrameBuffer, count: int, size: int = 100) -> None:
    for seq in range(buffer.last_seq + 1, buffer.last_seq + 1 + count):
        buffer.append(seq, frame(seq, size))


def test_small_load_stays_in_memory_and_touches_no_file(make: Factory, tmp_path: Path) -> None:
    buffer = make(10_000, 10_000, tmp_path)
    fill(buffer, 5)
    assert len(buffer) == 5 and buffer.memory_bytes == 500 and buffer.spool_bytes == 0
    assert list(tmp_path.iterdir()) == []
    assert buffer.get(3) == frame(3) and buffer.get(6) is None and buffer.get(0) is None


def test_memory_is_bounded_and_older_frames_spill_to_disk_in_order(make: Factory, tmp_path: Path) -> None:
    buffer = make(1_000, 100_000, tmp_path)
    fill(buffer, 50)
    assert buffer.memory_bytes <= 1_000
    assert buffer.spool_bytes > 0 and buffer.spool_files
    assert [buffer.get(seq) for seq in range(1, 51)] == [frame(seq) for seq in range(1, 51)]
    assert buffer.dropped == 0 and (buffer.first_seq, buffer.last_seq) == (1, 50)


def test_spool_is_bounded_and_the_oldest_frames_are_dropped_and_counted(
    make: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = make(1_000, 5_000, tmp_path)
    with caplog.at_level(logging.WARNING, logger="producers"):
        fill(buffer, 200)
    assert buffer.spool_bytes <= 5_000 and buffer.memory_bytes <= 1_000
    assert sum(path.stat().st_size for path in tmp_path.iterdir()) <= 5_000
    assert buffer.dropped > 0
    assert buffer.first_seq == 1 + buffer.dropped and buffer.last_seq == 200
    assert [buffer.get(seq) for seq in range(buffer.first_seq, 201)] == [
        frame(seq) for seq in range(buffer.first_seq, 201)
    ]
    assert buffer.get(buffer.first_seq - 1) is None
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_frame_larger_than_the_spool_is_dropped_with_everything_older(make: Factory, tmp_path: Path) -> None:
    buffer = make(150, 1_000, tmp_path)
    fill(buffer, 3)
    buffer.append(4, frame(4, 2_000))
    buffer.append(5, frame(5))
    assert buffer.first_seq == 5 and buffer.dropped == 4


def test_without_a_spool_the_oldest_frames_are_dropped(make: Factory, tmp_path: Path) -> None:
    buffer = make(300, 0, tmp_path)
    fill(buffer, 10)
    assert buffer.dropped == 7 and buffer.first_seq == 8 and list(tmp_path.iterdir()) == []


def test_release_deletes_spool_files_once_everything_in_them_is_acked(make: Factory, tmp_path: Path) -> None:
    buffer = make(1_000, 20_000, tmp_path)
    fill(buffer, 100)
    files = list(buffer.spool_files)
    assert len(files) > 1
    released = buffer.release_through(30)
    assert released == range(1, 31) and buffer.first_seq == 31
    assert not files[0].exists() or buffer.spool_files[0] == files[0]
    assert buffer.get(30) is None and buffer.get(31) == frame(31)
    assert buffer.release_through(100) == range(31, 101)
    assert len(buffer) == 0 and buffer.spool_bytes == 0 and buffer.memory_bytes == 0
    assert list(tmp_path.iterdir()) == []
    fill(buffer, 30)
    assert buffer.first_seq == 101 and [buffer.get(s) for s in (101, 130)] == [frame(101), frame(130)]


def test_release_is_idempotent_and_ignores_old_seqs(make: Factory, tmp_path: Path) -> None:
    buffer = make(1_000, 100_000, tmp_path)
    fill(buffer, 5)
    assert buffer.release_through(3) == range(1, 4)
    assert buffer.release_through(2) == range(4, 3)
    assert len(buffer) == 2


def test_close_removes_a_private_spool_directory(make: Factory) -> None:
    buffer = make(100, 100_000)
    fill(buffer, 20)
    directory = buffer.spool_files[0].parent
    assert directory.exists()
    buffer.close()
    assert not directory.exists() and len(buffer) == 0


def test_seqs_must_be_consecutive(make: Factory, tmp_path: Path) -> None:
    buffer = make(1_000, 1_000, tmp_path)
    buffer.append(1, b"x")
    with pytest.raises(ValueError, match="consecutive"):
        buffer.append(3, b"x")


def test_a_corrupt_spool_segment_drops_its_frames_instead_of_raising(
    make: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    buffer = make(200, 100_000, tmp_path)
    fill(buffer, 20)
    buffer.spool_files[0].write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="producers"):
        assert buffer.get(1) is None
    assert buffer.first_seq > 1 and buffer.dropped == buffer.first_seq - 1
    assert buffer.get(20) == frame(20)
    assert any("spool" in r.getMessage() for r in caplog.records)


def test_the_ledger_balances_acks_refusals_drops_and_outstanding_frames(make: Factory, tmp_path: Path) -> None:
    ledger = Ledger(make(450, 0, tmp_path))
    for seq in range(1, 5):
        assert ledger.next_seq == seq
        ledger.add(frame(seq))
    assert ledger.refuse(2) and not ledger.refuse(2) and not ledger.refuse(9)
    assert ledger.is_refused(2) and ledger.outstanding == 3
    ledger.acknowledge(3)
    assert (ledger.acked, ledger.refused, ledger.outstanding) == (2, 1, 1)
    assert not ledger.is_refused(2)
    ledger.unbuildable()
    assert ledger.refuse(4)
    for seq in range(5, 10):
        ledger.add(frame(seq))
    report = ledger.report("r", sent=4)
    assert report.dropped == ledger.buffer.dropped - 1  # seq 4 was refused before it was dropped
    assert report.frames == report.acked + report.refused + report.dropped + report.undelivered
    assert (report.frames, report.acked, report.refused, report.sent) == (10, 2, 3, 4)
