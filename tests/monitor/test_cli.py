"""Tests of the ``labscreen`` command: a real ``serve`` process on port 0, then ``runs`` and ``export``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import RepeatFilter, main
from producers import Monitor


@contextlib.contextmanager
def serving(*flags: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``labscreen serve --port 0`` with ``flags`` as a process; its URL. It must stop cleanly on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "serve", "--port", "0", "--log-level", "WARNING", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"serving on (http://\S+) \(port (\d+)\)", line)
        assert match, f"unexpected first line: {line!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
        assert match.group(2) != "0"
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "cli.sqlite"
    with serving("--store", str(store)) as url:
        yield url, store


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


def test_runs_calls_a_run_stale_by_the_servers_setting(
    served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = served
    http(url + "/api/ingest", {"run": "quiet", "step": 0, "metrics": {"loss": 1.0}})
    monkeypatch.setenv("LABSCREEN_STALE_AFTER", "0.01")  # what `labscreen serve` reads too
    deadline = time.monotonic() + 30
    while not re.search(r"quiet\s+stale", capsys.readouterr().out):
        assert time.monotonic() < deadline, "labscreen runs never called the silent run stale"
        assert main(["runs", "--store", str(store)]) == 0


def test_serve_kiosk_serves_the_lab_screen_view_by_default(tmp_path: Path) -> None:
    def page(url: str) -> str:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return str(reply.read().decode())

    with serving("--store", str(tmp_path / "k.sqlite"), "--kiosk") as url:
        assert '"kiosk": true' in page(url + "/")
        assert '"kiosk": false' in page(url + "/?kiosk=0")  # a desk view is one argument away
    with serving("--store", str(tmp_path / "k.sqlite")) as url:
        assert '"kiosk": false' in page(url + "/")


def test_export_json_and_unknown_run(served: tuple[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    url, store = served
    http(url + "/api/ingest", {"run": "j", "step": 0, "metrics": {"acc": 0.5}})
    assert main(["export", "j", "--format", "json", "--store", str(store)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["run"]["id"] == "j" and document["scalars"]["acc"]["values"] == [0.5]
    assert main(["export", "nobody", "--store", str(store)]) == 2
    assert "nobody" in capsys.readouterr().err


def test_serve_creates_the_default_store_directory_on_a_fresh_machine(tmp_path: Path) -> None:
    data_home = tmp_path / "fresh-home" / ".local" / "share"  # nothing exists yet
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABSCREEN_")} | {"XDG_DATA_HOME": str(data_home)}
    with serving(env=env) as url:
        http(url + "/api/ingest", {"run": "first", "step": 0, "metrics": {"loss": 1.0}})
        assert http(url + "/healthz")[0] == 200
    store = data_home / "labscreen" / "labscreen.sqlite"
    assert main(["runs", "--store", str(store)]) == 0


def test_serve_on_an_unusable_store_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "serve", "--port", "0", "--store", str(blocker / "s.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.startswith("labscreen: ") and "a-file" in done.stderr


def test_a_json_export_holds_every_snapshot_and_event(
    served: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = served
    rng = np.random.default_rng(0)
    with Monitor(url, run="snapshots") as monitor:
        for step in range(3):
            monitor.log({"loss": 1.0 / (step + 1)}, step=step)
            for name in ("val", "train"):
                monitor.predictions(name, rng.integers(0, 2, 8), rng.dirichlet([1, 1], 8), step=step)
            monitor.event(f"epoch {step}")
    assert main(["export", "snapshots", "--format", "json", "--store", str(store)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert sorted((p["name"], p["step"]) for p in document["predictions"]) == [
        (name, step) for name in ("train", "val") for step in range(3)
    ]
    assert {"epoch 0", "epoch 1", "epoch 2"} <= {e["text"] for e in document["events"]}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"labscreen \d+\.\d+\.\d+\n", capsys.readouterr().out)


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
