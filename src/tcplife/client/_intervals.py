"""
What a load run did in each interval (C{--interval}): for the progress line,
for the C{--json-stream} of one JSON object per interval, and for the parent
of several workers, which adds theirs up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from hdrh.histogram import HdrHistogram

from ._report import Latency, countErrors
from ._sinks import TextSink
from ._tally import added


@attrs.frozen
class IntervalReport:
    """
    One interval of a run.

    @ivar index: 1 for the first interval, and so on.
    @ivar start: Seconds from the run's start to the interval's.
    @ivar end: Seconds from the run's start to the interval's end.
    @ivar messages: Messages completed in the interval.
    @ivar errors: Errors counted in the interval, by kind.
    @ivar late: Messages sent late in the interval (C{None} in a closed
        loop).
    @ivar open: Connections open at its end.
    @ivar cpu: CPU seconds the client used in the interval: near the
        interval's length, the client itself is the bottleneck.
    @ivar histogram: The latencies of the messages completed in it.
    """

    index: int
    start: float
    end: float
    messages: int
    size: int
    errors: tuple[tuple[str, int], ...]
    late: int | None
    open: int
    cpu: float
    histogram: HdrHistogram = attrs.field(eq=False, repr=False)

    @classmethod
    def merged(cls, parts: Sequence[IntervalReport]) -> IntervalReport:
        """
        The same interval of several workers, as one: counts summed,
        histograms added, over the longest of their spans.
        """
        first = parts[0]
        errors: dict[str, int] = {}
        for part in parts:
            for kind, count in part.errors:
                errors[kind] = errors.get(kind, 0) + count
        lates = [part.late for part in parts if part.late is not None]
        return cls(
            index=first.index,
            start=min(part.start for part in parts),
            end=max(part.end for part in parts),
            messages=sum(part.messages for part in parts),
            size=first.size,
            errors=countErrors(errors),
            late=sum(lates) if lates else None,
            open=sum(part.open for part in parts),
            cpu=sum(part.cpu for part in parts),
            histogram=added([part.histogram for part in parts]),
        )

    @property
    def latency(self) -> Latency:
        return Latency.fromHistogram(self.histogram)

    @property
    def errorCount(self) -> int:
        return sum(count for _, count in self.errors)

    @property
    def messagesPerSecond(self) -> float:
        length = self.end - self.start
        return self.messages / length if length > 0 else 0.0

    def toJSON(self) -> dict[str, Any]:
        return {
            "event": "interval",
            "interval": self.index,
            "start_s": round(self.start, 6),
            "end_s": round(self.end, 6),
            "messages": self.messages,
            "messages_per_s": round(self.messagesPerSecond, 3),
            "mb_per_s": round(self.messagesPerSecond * self.size / 1e6, 6),
            "errors": dict(self.errors),
            "late": self.late,
            "open": self.open,
            "cpu_s": round(self.cpu, 6),
            "latency_us": self.latency.toJSON(),
        }


class ProgressLine:
    """
    A line on a terminal, rewritten in place after every interval: its
    rate and p99, and the connections and errors of the run.
    """

    def __init__(self, sink: TextSink) -> None:
        self._sink = sink
        self._shown = False
        self._errors = 0

    def show(self, interval: IntervalReport) -> None:
        self._errors += interval.errorCount
        rate = interval.messagesPerSecond
        self._sink.write(
            f"\r{interval.end:7.1f} s {rate:12,.0f} msg/s "
            f"{rate * interval.size / 1e6:10.3f} MB/s "
            f"p99 {interval.latency.p99 / 1000:9.3f} ms "
            # Back to the line's start: a log line written meanwhile (twist's
            # log may share the terminal) overwrites it instead of trailing it.
            f"{interval.open:7,} open {self._errors:8,} errors\x1b[K\r"
        )
        self._sink.flush()
        self._shown = True

    def clear(self) -> None:
        """
        Erase the line, if one was shown, for the report to start clean.
        """
        if self._shown:
            self._sink.write("\r\x1b[K")
            self._sink.flush()
            self._shown = False
