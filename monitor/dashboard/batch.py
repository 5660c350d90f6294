"""The messages of one flush, sorted by kind for the panels.

A flush hands every panel one ``Batch``; each panel takes the kinds it
draws and merges them so that it streams once per source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from monitor.hub import HubMessage
from monitor.wire import DataSummary, Event, Finish, Graph, Hello, Histogram, Predictions, Scalars


@dataclass
class Batch:
    """Messages by kind, each list in arrival order."""

    hellos: list[Hello] = field(default_factory=list)
    scalars: list[Scalars] = field(default_factory=list)
    histograms: list[Histogram] = field(default_factory=list)
    predictions: list[Predictions] = field(default_factory=list)
    graphs: list[Graph] = field(default_factory=list)
    data: list[DataSummary] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finishes: list[Finish] = field(default_factory=list)

    @classmethod
    def of(cls, messages: Iterable[HubMessage]) -> Batch:
        """Sort ``messages`` by kind, keeping their order within a kind."""
        batch = cls()
        for message in messages:
            batch.add(message)
        return batch

    def add(self, message: HubMessage) -> None:
        """Append one message to the list of its kind."""
        match message:
            case Hello():
                self.hellos.append(message)
            case Scalars():
                self.scalars.append(message)
            case Histogram():
                self.histograms.append(message)
            case Predictions():
                self.predictions.append(message)
            case Graph():
                self.graphs.append(message)
            case DataSummary():
                self.data.append(message)
            case Event():
                self.events.append(message)
            case Finish():
                self.finishes.append(message)

    def for_run(self, run: str) -> Batch:
        """Only the messages of ``run``."""
        return Batch.of(m for m in self.messages() if m.run == run)

    def messages(self) -> list[HubMessage]:
        """Every message, grouped by kind."""
        groups: list[list[HubMessage]] = [
            list(self.hellos), list(self.scalars), list(self.histograms), list(self.predictions),
            list(self.graphs), list(self.data), list(self.events), list(self.finishes),
        ]  # fmt: skip
        return [m for group in groups for m in group]
