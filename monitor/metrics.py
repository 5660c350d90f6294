"""The server's own counters and gauges, rendered in Prometheus text format.

Counters only go up; gauges are read at render time from the live objects
(store queue, hub, connection sets) so they cannot drift.

Thread safety: counters are incremented on the event loop thread only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

Gauge = Callable[[], float]


@dataclass
class Metrics:
    """Counters of what ingest has seen, plus named gauges read on demand."""

    frames: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    points_stored: int = 0
    duplicates: int = 0
    nonfinite_values: int = 0
    http_requests: int = 0
    gauges: dict[str, tuple[str, Gauge]] = field(default_factory=dict)

    def gauge(self, name: str, help_text: str, read: Gauge) -> None:
        """Register a gauge read at render time."""
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        """The whole registry in Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        _counter(lines, "labscreen_frames_received_total", "Frames accepted, by kind.", "kind", self.frames)
        _counter(lines, "labscreen_errors_total", "Frames or requests refused, by error code.", "code", self.errors)
        for name, help_text, value in (
            ("labscreen_points_stored_total", "Scalar points accepted for storage.", self.points_stored),
            ("labscreen_duplicate_frames_total", "Resent frames ignored as already stored.", self.duplicates),
            ("labscreen_nonfinite_values_total", "NaN or infinite scalar values received.", self.nonfinite_values),
            ("labscreen_http_ingest_requests_total", "HTTP ingest requests accepted.", self.http_requests),
        ):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
        for name, (help_text, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"


def _counter(lines: list[str], name: str, help_text: str, label: str, values: Counter[str]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f'{name}{{{label}="{key}"}} {count}' for key, count in sorted(values.items())]
