"""Tests of the ``labscreen`` command: a real ``serve`` process on port 0, then ``runs`` and ``export``."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import RepeatFilter, main


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "cli.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "serve", "--port", "0", "--store", str(store), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"serving on (http://\S+) \(port (\d+)\)", line)
        assert match, f"unexpected first line: {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        assert match.group(2) != "0"
        yield match.group(1), store
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


def http(url: str, body: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as reply:
        return reply.status, json.loads(reply.read())


def test_serve_on_port_zero_answers_healthz_then_export_writes_csv(
    served: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = served
    status, health = http(url + "/healthz")
    assert status == 200 and health["status"] == "ok"
    for step in range(3):
        http(
            url + "/api/ingest",
            {"run": "cli-run", "name": "from curl", "step": step, "metrics": {"loss": 1.0 / (step + 1)}},
        )
    out = tmp_path / "cli-run.csv"
    assert main(["export", "cli-run", "--format", "csv", "--out", str(out), "--store", str(store)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "name,step,wall,value"
    assert [line.split(",")[:2] for line in lines[1:]] == [["loss", "0"], ["loss", "1"], ["loss", "2"]]
    assert main(["runs", "--store", str(store)]) == 0
    assert re.search(r"cli-run\s+running\s+2\s+from curl", capsys.readouterr().out)


def test_export_json_and_unknown_run(served: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, store = served
    http(url + "/api/ingest", {"run": "j", "step": 0, "metrics": {"acc": 0.5}})
    assert main(["export", "j", "--format", "json", "--store", str(store)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["run"]["id"] == "j" and document["scalars"]["acc"]["values"] == [0.5]
    assert main(["export", "nobody", "--store", str(store)]) == 2
    assert "nobody" in capsys.readouterr().err


def test_missing_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--store", str(tmp_path / "absent.sqlite")]) == 2
    assert "no store at" in capsys.readouterr().err


def test_repeat_filter_lets_a_message_through_once_per_window_and_counts_the_rest() -> None:
    quiet = RepeatFilter(window=3600)

    def record(text: str) -> logging.LogRecord:
        return logging.LogRecord("bokeh.server.views.ws", logging.WARNING, __file__, 1, text, None, None)

    passed = [quiet.filter(record("Failed sending message as connection was closed")) for _ in range(100)]
    assert passed == [True] + [False] * 99
    assert quiet.filter(record("another message"))
    later = RepeatFilter(window=0)
    assert all(later.filter(record("same")) for _ in range(3))
