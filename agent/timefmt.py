"""The one timestamp format of the API: RFC 3339 in UTC, microsecond precision, `Z` (the spec's date-time)."""

from __future__ import annotations

import datetime


def rfc3339(moment: datetime.datetime) -> str:
    """`2026-11-28T09:15:02.123456Z`: always six fraction digits, so every timestamp has one length and sorts
    as text. A naive datetime is taken as local time (as `astimezone` does)."""
    return moment.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
