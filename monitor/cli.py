"""The ``labscreen`` command: ``serve``, ``runs``, ``export``, ``import-tb``.

``main(argv) -> int`` parses, resolves a frozen ``ServerConfig`` (flag >
``LABSCREEN_*`` environment > default) and runs the subcommand; ``serve``
creates the store file's directory if it is missing (the default one, under
the user's data directory, on a fresh machine). This module is the one place
that writes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from monitor.config import ServerConfig, default_store_path
from monitor.export import export_run
from monitor.store import SQLiteStore
from monitor.store.base import NotFoundError, StoreError

log = logging.getLogger("labscreen")

LIMIT_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("max_producers", int, "most concurrent producer connections (default 256)"),
    ("max_runs_per_connection", int, "most runs one producer connection may open (default 64)"),
    ("max_series_per_run", int, "most series names one run may create (default 5000)"),
    ("max_frames_per_second", float, "frames per second per connection before back-pressure (default 2000)"),
    ("max_viewers", int, "most concurrent dashboard sessions (default 64)"),
    ("max_viewer_backlog_bytes", int, "unsent bytes a viewer may hold back before its updates pause (default 8 MiB)"),
    ("viewer_stall_seconds", float, "seconds a viewer may stop reading before it is dropped and reloads (default 10)"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labscreen", description="Live monitor for deep-learning training.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the ingest server and the live dashboard")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; LABSCREEN_HOST)")
    serve.add_argument("--port", type=int, help="port, 0 for any free one (default 5006; LABSCREEN_PORT)")
    serve.add_argument("--store", help="SQLite file or :memory: (default under the user data dir; LABSCREEN_STORE)")
    serve.add_argument("--token", help="token producers must send (LABSCREEN_TOKEN)")
    serve.add_argument("--view-token", help="token viewers must present once (LABSCREEN_VIEW_TOKEN)")
    serve.add_argument("--stale-after", type=float, help="seconds of silence before a run is stale (default 120)")
    serve.add_argument("--kiosk", action="store_true", default=None, help="lab-screen view by default")
    serve.add_argument(
        "--allow-origin",
        action="append",
        help="host[:port] allowed to open the dashboard (repeatable); replaces the default "
        "localhost:PORT, 127.0.0.1:PORT and bound host, so list those too if still wanted",
    )
    serve.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    for name, kind, what in LIMIT_FLAGS:
        serve.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{what} (LABSCREEN_{name.upper()})")
    runs = sub.add_parser("runs", help="list the runs in a store")
    runs.add_argument("--store", help="SQLite file (default: the server's default store)")
    export = sub.add_parser("export", help="export one run's data")
    export.add_argument("run", help="run id")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--out", help="file to write (default stdout)")
    export.add_argument("--store", help="SQLite file (default: the server's default store)")
    tb = sub.add_parser(
        "import-tb",
        help="import TensorBoard logs (scalars and histograms) as finished runs",
        description="Import every run directory under LOGDIR (each directory with *tfevents* files) as a finished "
        "run: scalars and histograms, written by TensorFlow, Keras or PyTorch's SummaryWriter. Images, audio, text "
        "and graphs are not imported. Importing the same directory again adds only what was logged since. "
        "Needs the tensorboard package.",
    )
    tb.add_argument("logdir", help="TensorBoard log directory")
    tb.add_argument("--project", help="project of the imported runs (default: the log directory's name)")
    tb.add_argument("--store", help="SQLite file (default: the server's default store; created if missing)")
    return parser


class RepeatFilter(logging.Filter):
    """Lets a repeated log message through once per ``window`` seconds, saying how many were held back.

    Bokeh warns "Failed sending message as connection was closed" once per
    pending update when a tab goes away (a reload, a dropped slow viewer):
    hundreds of lines for one event.
    """

    def __init__(self, window: float = 60.0) -> None:
        super().__init__()
        self._window = window
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """True to emit ``record``; False while the same message was emitted less than ``window`` ago."""
        key = str(record.msg)
        now = time.monotonic()
        last, held = self._last.get(key, (-math.inf, 0))
        if now - last < self._window:
            self._last[key] = (last, held + 1)
            return False
        self._last[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self._window:.0f} s)"
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``labscreen`` command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "runs":
            return _runs(args)
        if args.command == "import-tb":
            return _import_tb(args)
        return _export(args)
    except (NotFoundError, ValueError, StoreError, OSError, ImportError) as exc:
        print(f"labscreen: {exc}", file=sys.stderr)
        return 2


def _version() -> str:
    try:
        return importlib.metadata.version("labscreen")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was not installed
        return "(not installed)"


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("tornado.access").setLevel(logging.WARNING)  # one line per request is noise
        logging.getLogger("bokeh.server.views.ws").addFilter(RepeatFilter())
    config = ServerConfig.resolve(
        host=args.host,
        port=args.port,
        store=args.store,
        token=args.token,
        view_token=args.view_token,
        stale_after=args.stale_after,
        kiosk=args.kiosk,
        allow_origin=tuple(args.allow_origin) if args.allow_origin else None,
        **{name: getattr(args, name) for name, _, _ in LIMIT_FLAGS},
    )
    if config.exposed and not (config.token and config.view_token):
        log.warning(
            "binding %s without --token and --view-token: anyone who can reach this address can write runs "
            "and read every run's data. Set both tokens, or bind 127.0.0.1.",
            config.host,
        )
    if config.store != ":memory:" and not Path(config.store).parent.is_dir():
        Path(config.store).parent.mkdir(parents=True)  # a fresh machine has no ~/.local/share yet
        log.info("created %s for the run store", Path(config.store).parent)
    asyncio.run(_serve_until_signal(config))
    return 0


async def _serve_until_signal(config: ServerConfig) -> None:
    from monitor.server import LabscreenServer

    server = LabscreenServer(config)
    server.start()
    print(f"labscreen serving on {server.url} (port {server.port})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop()


def _open_store(path: str | None) -> SQLiteStore:
    config = ServerConfig.resolve()  # the server's settings, so a run is stale here when it is stale there
    path = path or config.store or default_store_path()
    if path != ":memory:" and not os.path.exists(path):
        raise ValueError(f"no store at {path}; pass --store PATH (the file 'labscreen serve' writes)")
    return SQLiteStore(path, stale_after=config.stale_after)


def _runs(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    try:
        runs = store.list_runs()
    finally:
        store.close()
    print(f"{'ID':<40} {'STATUS':<9} {'LAST STEP':>9}  NAME")
    for run in runs:
        step = "" if run.last_step is None else str(run.last_step)
        print(f"{run.id:<40} {run.status:<9} {step:>9}  {run.name}")
    return 0


def _export(args: argparse.Namespace) -> int:
    store = _open_store(args.store)
    try:
        text = export_run(store, args.run, args.format)
    finally:
        store.close()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _import_tb(args: argparse.Namespace) -> int:
    from monitor.tb_import import import_logdir

    path = args.store or ServerConfig.resolve().store or default_store_path()
    if path != ":memory:" and not Path(path).parent.is_dir():
        Path(path).parent.mkdir(parents=True)
    reports = import_logdir(path, args.logdir, project=args.project)
    print(f"{'RUN ID':<24} {'SCALARS':>9} {'HISTOGRAMS':>10}  NAME")
    for report in reports:
        note = " (imported before: nothing new)" if report.already else ""
        print(f"{report.run:<24} {report.scalars:>9} {report.histograms:>10}  {report.name}{note}")
        for tag, what in sorted(report.skipped.items()):
            print(f"{'':<24} not imported: {tag}: {what}")
    print(f"into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
