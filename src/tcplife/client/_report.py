"""
The load report: what a load run did, as text for people and JSON for tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from hdrh.histogram import HdrHistogram

from ._failures import REPORTED_KINDS
from ._reflect import Reflections
from ._tally import Tally, added, newHistogram

if TYPE_CHECKING:
    from ._kernelview import KernelReport

#: The percentiles reported, as HDR histogram percentiles and as JSON keys.
PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"))


@attrs.frozen
class Latency:
    """
    Round-trip times in microseconds, from an HDR histogram.
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

    def toJSON(self) -> dict[str, int]:
        return {"count": self.count, **self.byName()}

    def render(self) -> str:
        """
        The percentiles in milliseconds, as the text report shows them.
        """
        return "  ".join(f"{name} {value / 1000:.3f}" for name, value in self.byName().items())


def countErrors(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """
    Errors in report order: the always-reported kinds, then the others.
    """
    others = sorted(kind for kind in counts if kind not in REPORTED_KINDS)
    return tuple((kind, counts.get(kind, 0)) for kind in (*REPORTED_KINDS, *others))


@attrs.frozen
class TargetReport:
    """
    What the connections to one target did.

    @ivar histograms: The round trips from the intended and from the actual
        send times, for adding up (the report of several workers).
    """

    target: str
    messages: int
    connectionsOpened: int
    late: int
    errors: tuple[tuple[str, int], ...]
    histograms: tuple[HdrHistogram, HdrHistogram] = attrs.field(eq=False, repr=False)

    @classmethod
    def fromTally(cls, tally: Tally, opened: int) -> TargetReport:
        return cls(
            target=tally.name,
            messages=tally.done,
            connectionsOpened=opened,
            late=tally.late,
            errors=countErrors(tally.errors),
            histograms=(tally.latency, tally.service),
        )

    @property
    def latency(self) -> Latency:
        return Latency.fromHistogram(self.histograms[0])

    @property
    def serviceTime(self) -> Latency:
        return Latency.fromHistogram(self.histograms[1])

    @property
    def errorCount(self) -> int:
        return sum(count for _, count in self.errors)

    def toJSON(self, duration: float, openLoop: bool) -> dict[str, Any]:
        return {
            "target": self.target,
            "messages": self.messages,
            "messages_per_s": round(self.messages / duration, 3) if duration > 0 else 0.0,
            "connections_opened": self.connectionsOpened,
            "errors": dict(self.errors),
            "latency_us": self.latency.toJSON(),
            "service_time_us": self.serviceTime.toJSON(),
            "late": self.late if openLoop else None,
        }


@attrs.frozen
class WorkerReport:
    """
    What one worker process of a run did (C{--workers}).

    @ivar index: 1 for the first worker.
    @ivar problem: Why it reported nothing (it died), if it did not.
    """

    index: int
    pid: int | None
    messages: int
    duration: float
    errors: tuple[tuple[str, int], ...]
    latency: Latency | None
    problem: str | None = None

    def toJSON(self) -> dict[str, Any]:
        rate = self.messages / self.duration if self.duration > 0 else 0.0
        return {
            "worker": self.index,
            "pid": self.pid,
            "messages": self.messages,
            "messages_per_s": round(rate, 3),
            "duration_s": round(self.duration, 6),
            "errors": dict(self.errors),
            "latency_us": self.latency.toJSON() if self.latency is not None else None,
            "problem": self.problem,
        }

    def describe(self) -> str:
        name = f"worker {self.index}" + (f" (pid {self.pid})" if self.pid is not None else "")
        if self.problem is not None:
            return f"{name} {self.problem}"
        return f"{name} {self.messages:,} messages"


def _counted(count: int, noun: str) -> str:
    """
    C{count} C{noun}s, in words: C{"1 segment"}, C{"1,189 segments"}.
    """
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


@attrs.frozen
class LoadReport:
    """
    What one load run did.

    @ivar messages: Messages whose every byte came back identical.
    @ivar bytes: Bytes of those messages (each way).
    @ivar duration: Seconds from the first connect to the end of the run.
    @ivar errors: Errors by kind, C{refused}, C{reset}, C{timeout} and
        C{mismatch} always, then any other kind seen.
    @ivar latency: With a rate (an open loop), from each message's intended
        send time on the run's timetable to its echo; without one (a closed
        loop), from its actual send, as L{serviceTime}.
    @ivar serviceTime: From each message's actual send to its echo.
    @ivar late: Messages sent more than a millisecond after their intended
        time (0 in a closed loop, which has no timetable; C{null} in JSON).
    @ivar targets: The same figures for each target.
    @ivar workers: With several worker processes, what each did.
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
    serviceTime: Latency
    late: int = 0
    targets: tuple[TargetReport, ...] = ()
    workers: tuple[WorkerReport, ...] = ()
    #: The kernel's round-trip times and retransmissions (TCP only).
    kernel: KernelReport | None = None
    reflections: Reflections | None = None

    @staticmethod
    def countErrors(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
        """
        Errors in report order: the always-reported kinds, then the others.
        """
        return countErrors(counts)

    @classmethod
    def fromTargets(cls, targets: tuple[TargetReport, ...], **setup: Any) -> LoadReport:
        """
        The report of a run whose targets did what C{targets} say; C{setup}
        holds the settings and the duration.
        """
        errors: dict[str, int] = {}
        for target in targets:
            for kind, count in target.errors:
                errors[kind] = errors.get(kind, 0) + count
        messages = sum(target.messages for target in targets)
        latency = added([t.histograms[0] for t in targets]) if targets else newHistogram()
        service = added([t.histograms[1] for t in targets]) if targets else latency
        return cls(
            messages=messages,
            bytes=messages * setup["size"],
            connectionsOpened=sum(target.connectionsOpened for target in targets),
            errors=countErrors(errors),
            latency=Latency.fromHistogram(latency),
            serviceTime=Latency.fromHistogram(service),
            late=sum(target.late for target in targets),
            targets=targets,
            **setup,
        )

    @property
    def openLoop(self) -> bool:
        """
        Whether messages followed a timetable (C{--rate}).
        """
        return self.rate is not None

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
            "loop": "open" if self.openLoop else "closed",
            "duration_s": round(self.duration, 6),
            "interrupted": self.interrupted,
            "messages": self.messages,
            "messages_per_s": round(self.messagesPerSecond, 3),
            "bytes": self.bytes,
            "mb_per_s": round(self.megabytesPerSecond, 6),
            "connections_opened": self.connectionsOpened,
            "errors": dict(self.errors),
            "latency_us": self.latency.toJSON(),
            "service_time_us": self.serviceTime.toJSON(),
            "late": self.late if self.openLoop else None,
            "targets": [target.toJSON(self.duration, self.openLoop) for target in self.targets],
            "workers": [worker.toJSON() for worker in self.workers],
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
            setup.append(f"{self.rate:,g} msg/s on a timetable")
        ended = " (interrupted)" if self.interrupted else ""
        rows = [
            (
                "messages",
                f"{self.messages:,} ({self.messagesPerSecond:,.1f}/s), every byte verified",
            ),
            ("throughput", f"{self.megabytesPerSecond:,.3f} MB/s echoed"),
            ("connections", f"{self.connectionsOpened:,} opened"),
            ("errors", ", ".join(f"{kind} {count:,}" for kind, count in self.errors)),
        ]
        if self.openLoop:
            rows += [
                ("latency ms", f"{self.latency.render()}  (from the intended send time)"),
                ("service ms", f"{self.serviceTime.render()}  (from the actual send)"),
                (
                    "late",
                    f"{self.late:,} of {self.latency.count:,} messages sent over 1 ms "
                    "after their time",
                ),
            ]
        else:
            rows.append(("latency ms", f"{self.latency.render()}  (closed loop: from each send)"))
        rows += self._kernelRows()
        if self.reflections is not None:
            rows += self.reflections.rows()
        if len(self.targets) > 1:
            rows += self._targetRows()
        if self.workers:
            rows.append(("workers", "; ".join(worker.describe() for worker in self.workers)))
        lines = [
            f"tcpclient {self.pattern} to {self.target}: {', '.join(setup)}, "
            f"{self.duration:.2f} s{ended}"
        ]
        lines.extend(f"  {label:<12} {value}" for label, value in rows)
        return "\n".join(lines) + "\n"

    def _targetRows(self) -> list[tuple[str, str]]:
        width = max(len(target.target) for target in self.targets)
        rows = []
        for index, target in enumerate(self.targets):
            rows.append(
                (
                    "per target" if index == 0 else "",
                    f"{target.target:<{width}}  {target.messages:,} messages, "
                    f"{target.connectionsOpened:,} opened, {target.errorCount:,} errors, "
                    f"p99 {target.latency.p99 / 1000:.3f} ms",
                )
            )
        return rows

    def _kernelRows(self) -> list[tuple[str, str]]:
        if self.kernel is None:
            return []
        rtt = "  ".join(
            f"{name} {value / 1000:.3f}" for name, value in self.kernel.rtt.byName().items()
        )
        return [
            ("tcp rtt ms", rtt),
            ("retransmits", _counted(self.kernel.retransmits, "segment")),
        ]
