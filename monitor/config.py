"""The server's configuration: one frozen object, resolved once at start.

Each setting resolves as explicit value > ``LABSCREEN_<NAME>`` environment
variable > default. Nothing else in the server reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORT = 5006
"""Bokeh's customary port, so a producer's default URL finds the server."""


def default_store_path() -> str:
    """The default SQLite file under the user's data directory (XDG)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return os.path.join(base, "labscreen", "labscreen.sqlite")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``labscreen serve`` can be told.

    Attributes:
        host: Address to bind; 127.0.0.1 unless you mean to expose it.
        port: TCP port; 0 picks a free one (the bound port is logged).
        store: SQLite file path, or ``:memory:``.
        token: Bearer token producers must present, or ``None`` for none.
        view_token: Token viewers must present once, or ``None`` for none.
        stale_after: Seconds of silence after which a running run is stale.
        kiosk: Serve the lab-screen view by default.
        allow_origin: ``host[:port]`` origins allowed to open the
            dashboard's websocket, instead of the default ``localhost:PORT``,
            ``127.0.0.1:PORT`` and the bound host (empty: the default).
        max_producers: Most concurrent producer connections.
        max_runs_per_connection: Most runs one producer connection may open.
        max_series_per_run: Most distinct scalar, histogram and prediction
            names one run may create.
        max_frames_per_second: Sustained frame rate allowed per connection.
        max_viewers: Most concurrent dashboard sessions; more get a page
            saying the limit is reached.
        max_viewer_backlog_bytes: Most bytes a dashboard viewer may leave
            unread in the server before its live updates are held.
        viewer_stall_seconds: A viewer that stops reading (or stays over
            ``max_viewer_backlog_bytes``) this long is disconnected; its page
            reloads when it reads again.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    store: str = dataclasses.field(default_factory=default_store_path)
    token: str | None = None
    view_token: str | None = None
    stale_after: float = 120.0
    kiosk: bool = False
    allow_origin: tuple[str, ...] = ()
    max_producers: int = 256
    max_runs_per_connection: int = 64
    max_series_per_run: int = 5000
    max_frames_per_second: float = 2000.0
    max_viewers: int = 64
    max_viewer_backlog_bytes: int = 8 * 1024 * 1024
    viewer_stall_seconds: float = 10.0

    @classmethod
    def resolve(cls, environ: Mapping[str, str] | None = None, **explicit: Any) -> ServerConfig:
        """Build a config from explicit values, then the environment, then defaults.

        Args:
            environ: Environment to read (``os.environ`` when ``None``).
            **explicit: Settings given directly; ``None`` means "not given".

        Raises:
            ValueError: an unknown setting, or an environment value that does
                not parse as the setting's type (the message names both).
        """
        env = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(explicit) - set(fields)
        if unknown:
            raise ValueError(f"unknown server settings: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            if explicit.get(name) is not None:
                values[name] = explicit[name]
            elif f"LABSCREEN_{name.upper()}" in env:
                values[name] = _parse(name, f.type, env[f"LABSCREEN_{name.upper()}"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Check ranges.

        Raises:
            ValueError: naming the setting and its bad value.
        """
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.stale_after <= 0:
            raise ValueError(f"stale_after must be positive seconds, got {self.stale_after}")
        limits = (
            "max_producers",
            "max_runs_per_connection",
            "max_series_per_run",
            "max_frames_per_second",
            "max_viewers",
            "max_viewer_backlog_bytes",
            "viewer_stall_seconds",
        )
        for name in limits:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def exposed(self) -> bool:
        """Whether the bind address reaches beyond this machine."""
        return self.host not in ("127.0.0.1", "localhost", "::1")


def _parse(name: str, kind: Any, raw: str) -> Any:
    text = str(kind)
    try:
        if "bool" in text:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if "tuple" in text:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ValueError(f"LABSCREEN_{name.upper()}={raw!r} is not a valid {text}") from exc
    return raw or None if "None" in text else raw
