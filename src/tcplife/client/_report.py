"""
The load report: what a load run did, as text for people and JSON for tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from hdrh.histogram import HdrHistogram

from ._failures import REPORTED_KINDS
from ._reflect import Reflections

if TYPE_CHECKING:
    from ._kernelview import KernelReport

#: The percentiles reported, as HDR histogram percentiles and as JSON keys.
PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"))


@attrs.frozen
class Latency:
    """
    Round-trip times in microseconds, from an HDR histogram: the time from
    writing a message's first byte to reading its last byte back.
    """

    count: int
    p50: int
    p90: int
    p99: int
    p999: int
    max: int

    @classmethod
    def fromHistogram(cls, histogram: HdrHistogram) -> Latency:
        p50, p90, p99, p999 = (int(histogram.get_value_at_percentile(p)) for p, _ in PERCENTILES)
        return cls(
            count=int(histogram.get_total_count()),
            p50=p50,
            p90=p90,
            p99=p99,
            p999=p999,
            max=int(histogram.get_max_value()),
        )

    def byName(self) -> dict[str, int]:
        """
        The percentiles and the maximum by their report names.
        """
        names = [name for _, name in PERCENTILES] + ["max"]
        values = [self.p50, self.p90, self.p99, self.p999, self.max]
        return dict(zip(names, values, strict=True))


@attrs.frozen
class LoadReport:
    """
    What one load run did.

    @ivar messages: Messages whose every byte came back identical.
    @ivar bytes: Bytes of those messages (each way).
    @ivar duration: Seconds from the first connect to the end of the run.
    @ivar errors: Errors by kind, C{refused}, C{reset}, C{timeout} and
        C{mismatch} always, then any other kind seen.
    @ivar reflections: Who answered and whom they saw (C{--reflect});
        C{None} without it.
    """

    pattern: str
    target: str
    connections: int
    size: int
    window: int | None
    rate: float | None
    duration: float
    interrupted: bool
    messages: int
    bytes: int
    connectionsOpened: int
    errors: tuple[tuple[str, int], ...]
    latency: Latency
    #: The kernel's round-trip times and retransmissions (TCP only).
    kernel: KernelReport | None = None
    reflections: Reflections | None = None

    @staticmethod
    def countErrors(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
        """
        Errors in report order: the always-reported kinds, then the others.
        """
        others = sorted(kind for kind in counts if kind not in REPORTED_KINDS)
        return tuple((kind, counts.get(kind, 0)) for kind in (*REPORTED_KINDS, *others))

    @property
    def errorCount(self) -> int:
        return sum(count for _, count in self.errors)

    @property
    def messagesPerSecond(self) -> float:
        return self.messages / self.duration if self.duration > 0 else 0.0

    @property
    def megabytesPerSecond(self) -> float:
        return self.bytes / self.duration / 1e6 if self.duration > 0 else 0.0

    def toJSON(self) -> dict[str, Any]:
        document = self._figures()
        if self.reflections is not None:
            document["reflect"] = self.reflections.toJSON()
        return document

    def _figures(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "target": self.target,
            "connections": self.connections,
            "size": self.size,
            "window": self.window,
            "rate": self.rate,
            "duration_s": round(self.duration, 6),
            "interrupted": self.interrupted,
            "messages": self.messages,
            "messages_per_s": round(self.messagesPerSecond, 3),
            "bytes": self.bytes,
            "mb_per_s": round(self.megabytesPerSecond, 6),
            "connections_opened": self.connectionsOpened,
            "errors": dict(self.errors),
            "latency_us": {"count": self.latency.count, **self.latency.byName()},
            **({"kernel": self.kernel.toJSON()} if self.kernel is not None else {}),
        }

    def render(self) -> str:
        """
        The report as a few aligned lines of text.
        """
        setup = [f"{self.connections} connection{'s' if self.connections != 1 else ''}"]
        setup.append(f"{self.size:,}-byte messages")
        if self.pattern == "stream" and self.window is not None:
            setup.append(f"window {self.window:,} bytes")
        if self.rate is not None:
            setup.append(f"at most {self.rate:,g} msg/s")
        ended = " (interrupted)" if self.interrupted else ""
        latency = "  ".join(
            f"{name} {value / 1000:.3f}" for name, value in self.latency.byName().items()
        )
        rows = [
            (
                "messages",
                f"{self.messages:,} ({self.messagesPerSecond:,.1f}/s), every byte verified",
            ),
            ("throughput", f"{self.megabytesPerSecond:,.3f} MB/s echoed"),
            ("connections", f"{self.connectionsOpened:,} opened"),
            ("errors", ", ".join(f"{kind} {count:,}" for kind, count in self.errors)),
            ("latency ms", latency),
            *self._kernelRows(),
        ]
        if self.reflections is not None:
            rows.extend(self.reflections.rows())
        lines = [
            f"tcpclient {self.pattern} to {self.target}: {', '.join(setup)}, "
            f"{self.duration:.2f} s{ended}"
        ]
        lines.extend(f"  {label:<12} {value}" for label, value in rows)
        return "\n".join(lines) + "\n"

    def _kernelRows(self) -> list[tuple[str, str]]:
        if self.kernel is None:
            return []
        rtt = "  ".join(
            f"{name} {value / 1000:.3f}" for name, value in self.kernel.rtt.byName().items()
        )
        return [
            ("tcp rtt ms", rtt),
            ("retransmits", f"{self.kernel.retransmits:,} segments"),
        ]
