"""Pointer paths: human-like Bezier curves with eased timing, and straight stepped lines. Pure functions."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

Point = tuple[int, int]
# A path is a list of (x, y, t) where t is seconds after the movement starts.
TimedPath = list[tuple[int, int, float]]

STEP_INTERVAL_S = 0.012  # ~83 pointer events per second, like a real mouse on a busy desktop
_CONTROL_PAD = 80  # control points may bulge this far outside the start/end box
MAX_AUTO_DURATION_MS = 1200  # the longest a move of one segment takes without an explicit duration


def auto_duration_ms(distance: float) -> int:
    """Fitts-like: long moves take longer, but sub-linearly (~350 ms for 100 px, ~600 ms for 600 px)."""
    if distance < 1:
        return 0
    return int(min(float(MAX_AUTO_DURATION_MS), 150.0 + 110.0 * math.log2(1.0 + distance / 40.0)))


def steps_for(duration_ms: float) -> int:
    """How many pointer steps a smooth movement of this duration makes (one every STEP_INTERVAL_S)."""
    return round(duration_ms / 1000 / STEP_INTERVAL_S)


def smooth_duration_ms(waypoints: Sequence[Point], duration_ms: int | None) -> int:
    """The total time of a smooth path: `duration_ms`, or derived from the length of each segment."""
    if duration_ms is not None:
        return duration_ms
    distances = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(waypoints)]
    if len(distances) <= 1:
        return auto_duration_ms(sum(distances))
    return sum(auto_duration_ms(d) for d in distances)


def _ease_in_out_cubic(t: float) -> float:
    return 4 * t * t * t if t < 0.5 else 1 - (-2 * t + 2) ** 3 / 2


def _bezier(
    p0: Point, p1: tuple[float, float], p2: tuple[float, float], p3: Point, t: float
) -> tuple[float, float]:
    u = 1 - t
    a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
    return (a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1])


def _clamp(point: tuple[float, float], width: int, height: int) -> Point:
    return (min(max(round(point[0]), 0), width - 1), min(max(round(point[1]), 0), height - 1))


def curve(start: Point, end: Point, steps: int, screen: tuple[int, int], rng: random.Random) -> list[Point]:
    """`steps` points after `start` along a random cubic Bezier to `end`, spaced by an ease-in-out profile
    along the arc (slow start, fast middle, slow finish). The last point is exactly `end`."""
    steps = max(1, steps)
    lo_x, hi_x = min(start[0], end[0]) - _CONTROL_PAD, max(start[0], end[0]) + _CONTROL_PAD
    lo_y, hi_y = min(start[1], end[1]) - _CONTROL_PAD, max(start[1], end[1]) + _CONTROL_PAD
    c1 = (rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
    c2 = (rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y))
    # Arc-length table of the curve, so easing is in distance travelled rather than in the parameter.
    samples = max(16, steps * 4)
    table = [_bezier(start, c1, c2, end, i / samples) for i in range(samples + 1)]
    lengths = [0.0]
    for (x0, y0), (x1, y1) in itertools.pairwise(table):
        lengths.append(lengths[-1] + math.hypot(x1 - x0, y1 - y0))
    total = lengths[-1] or 1.0
    points: list[Point] = []
    j = 0
    for i in range(1, steps + 1):
        target = _ease_in_out_cubic(i / steps) * total
        while j < samples - 1 and lengths[j + 1] < target:
            j += 1
        span = lengths[j + 1] - lengths[j] or 1.0
        f = min(1.0, max(0.0, (target - lengths[j]) / span))
        x = table[j][0] + (table[j + 1][0] - table[j][0]) * f
        y = table[j][1] + (table[j + 1][1] - table[j][1]) * f
        if 0 < i < steps and rng.random() < 0.5:  # a hand is not a plotter: small tremor
            x += rng.gauss(0, 0.6)
            y += rng.gauss(0, 0.6)
        points.append(_clamp((x, y), *screen))
    points[-1] = end
    return points


def smooth_path(
    waypoints: Sequence[Point],
    duration_ms: int | None,
    screen: tuple[int, int],
    rng: random.Random | None = None,
) -> TimedPath:
    """Bezier curves through every waypoint; the total time is `duration_ms` or derived from the length."""
    rng = rng or random.Random()
    segments = list(itertools.pairwise(waypoints))
    distances = [math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in segments]
    total_distance = sum(distances)
    total_s = smooth_duration_ms(waypoints, duration_ms) / 1000
    total_steps = max(len(segments), steps_for(total_s * 1000))
    path: TimedPath = []
    elapsed = 0.0
    for (a, b), distance in zip(segments, distances, strict=False):
        share = distance / total_distance if total_distance else 1 / len(segments)
        steps = max(1, round(total_steps * share))
        seg_s = total_s * share
        for i, point in enumerate(curve(a, b, steps, screen, rng), start=1):
            path.append((point[0], point[1], elapsed + seg_s * i / steps))
        elapsed += seg_s
    return path


def linear_path(waypoints: Sequence[Point], steps_per_segment: int, step_delay_ms: int) -> TimedPath:
    """Straight lines, `steps_per_segment` evenly rounded steps each, `step_delay_ms` apart."""
    path: TimedPath = []
    t = 0.0
    for a, b in itertools.pairwise(waypoints):
        for i in range(1, steps_per_segment + 1):
            x = a[0] + round((b[0] - a[0]) * i / steps_per_segment)
            y = a[1] + round((b[1] - a[1]) * i / steps_per_segment)
            if path:
                t += step_delay_ms / 1000
            path.append((x, y, t))
    return path
