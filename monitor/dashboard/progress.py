"""How far a run is and how fast it goes: its steps over producer time, for the header.

Steps/s shown is measured over ``SPEED_WINDOW`` seconds (the current speed);
the ETA over ``ETA_WINDOW``, long enough to take in the pauses a run makes
every epoch (validation, checkpoints): over 30 s the ETA ignored them between
pauses and jumped at each. Points are kept at most one per ``GRAIN`` seconds
of producer time, so the long window costs a few hundred entries. Pure numpy.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
SPEED_WINDOW = 30.0
"""Seconds of producer time over which the steps/s shown is measured."""
ETA_WINDOW = 600.0
"""Seconds of producer time over which the rate behind the ETA is measured."""
GRAIN = 1.0
"""Progress is kept at most once per this many seconds of producer time (the newest step always)."""


class Progress:
    """The newest step of one run, its first, and its rate over a window of producer time."""

    def __init__(self) -> None:
        self._points: deque[tuple[float, int]] = deque()
        self.step: int | None = None
        """The newest step seen."""
        self.first_step: int | None = None
        """The lowest step seen (0 for a run that counts from 0)."""

    def note(self, steps: Array, walls: Array, every: bool = False) -> None:
        """Note the steps newer than ``step`` (their producer times in ``walls``).

        Only the first and the newest new step are kept unless ``every`` (a
        loaded history: a few hundred points, so both windows have their
        shape at once); a fast stream then costs two entries per message.
        """
        finite = np.isfinite(walls)
        if not finite.all():  # a point without a time cannot time anything
            steps, walls = steps[finite], walls[finite]
        if not len(steps):
            return
        low = int(steps.min())
        self.first_step = low if self.first_step is None else min(self.first_step, low)
        newer = np.flatnonzero(steps > self.step) if self.step is not None else np.arange(len(steps))
        if not len(newer):
            return
        newest = int(newer[np.argmax(steps[newer])])
        chosen = newer[np.argsort(steps[newer], kind="stable")].tolist() if every else [int(newer[0]), newest]
        for i in dict.fromkeys(chosen):
            if self.step is None or steps[i] > self.step:
                self._add(float(walls[i]), int(steps[i]))
                self.step = int(steps[i])

    def _add(self, wall: float, step: int) -> None:
        points = self._points
        if len(points) >= 2 and wall - points[-2][0] < GRAIN:
            points[-1] = (wall, step)
        else:
            points.append((wall, step))
        while points[0][0] < wall - ETA_WINDOW:
            points.popleft()

    def rate(self, window: float) -> float | None:
        """Steps per second of producer time over the last ``window`` seconds noted; None before two points."""
        if len(self._points) < 2:
            return None
        w1, s1 = self._points[-1]
        w0, s0 = w1, s1  # the oldest point within the window, found from the newest end (a few dozen, not 600)
        for w, s in reversed(self._points):
            if w < w1 - window:
                break
            w0, s0 = w, s
        if w0 == w1:  # one point in the window: from the point before it
            w0, s0 = self._points[-2]
        return (s1 - s0) / (w1 - w0) if w1 > w0 and s1 >= s0 else None

    def done(self) -> int | None:
        """Steps done: the newest step, plus one for a run that counts from 0 (steps 0..n-1 are n steps)."""
        if self.step is None:
            return None
        return self.step + 1 if self.first_step == 0 else self.step
