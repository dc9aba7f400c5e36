"""
What a load run must achieve to pass, for CI: C{--max-p99}, C{--max-errors}
and C{--min-rate}.
"""

from __future__ import annotations

import attrs

from ._report import LoadReport


@attrs.frozen
class Thresholds:
    """
    The limits a run is held to; C{None} sets none.

    @ivar maxP99: The highest p99 latency allowed, in milliseconds (in an
        open loop, from the intended send times).
    @ivar maxErrors: The most errors allowed; without it, any error fails
        the run (and needs no line of its own: the report counts them).
    @ivar minRate: The lowest rate allowed, in messages per second over the
        whole run.
    """

    maxP99: float | None = None
    maxErrors: int | None = None
    minRate: float | None = None

    def breaches(self, report: LoadReport) -> list[str]:
        """
        Each limit C{report} breaks, as a phrase that names the option.
        """
        found = []
        p99 = report.latency.p99 / 1000
        if self.maxP99 is not None and p99 > self.maxP99:
            found.append(f"p99 latency {p99:,.3f} ms is over --max-p99 {self.maxP99:g}")
        if self.maxErrors is not None and report.errorCount > self.maxErrors:
            found.append(f"{report.errorCount:,} errors are over --max-errors {self.maxErrors}")
        rate = report.messagesPerSecond
        if self.minRate is not None and rate < self.minRate:
            found.append(f"{rate:,.1f} msg/s is under --min-rate {self.minRate:g}")
        return found

    def fails(self, report: LoadReport) -> bool:
        """
        Whether C{report} fails the run: a limit broken, or any error when
        no C{--max-errors} allows some.
        """
        if self.maxErrors is None and report.errorCount:
            return True
        return bool(self.breaches(report))
