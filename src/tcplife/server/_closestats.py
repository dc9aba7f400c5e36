"""
What the closed connections add up to, for the metrics: how long they
lived, their round-trip time as the kernel last measured it, and the
segments it retransmitted.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from ..protocols import TrackedConnection

#: Upper bounds (seconds) of the duration buckets: a loopback echo lives for
#: a fraction of a millisecond, an internet client's connection for minutes.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
)  # fmt: skip

#: Upper bounds (seconds) of the round-trip-time buckets: loopback's tens of
#: microseconds to a congested or intercontinental path's hundreds of ms.
RTT_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class Buckets:
    """
    A histogram with fixed upper bounds, as Prometheus exposes it: one
    C{bisect} per observation, nothing else.

    @ivar counts: Observations per bucket (not cumulative); the last one
        is C{+Inf}'s.
    """

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> Iterator[tuple[str, int]]:
        """
        C{(le, count)} pairs, as C{HistogramMetricFamily} takes them.
        """
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            yield ("+Inf" if bound == float("inf") else repr(bound)), running


class CloseStats:
    """
    Closed connections, as histograms of their duration and of their
    round-trip time at close (TCP only), and the segments retransmitted on
    them in all.
    """

    def __init__(self) -> None:
        self.duration = Buckets(DURATION_BUCKETS)
        self.rtt = Buckets(RTT_BUCKETS)
        self.retransmits = 0

    def closed(self, connection: TrackedConnection, duration: float) -> None:
        self.duration.observe(duration)
        tcp = connection.tcp
        if tcp is None:
            return
        rtt = tcp.get("rtt_us")
        if rtt is not None:
            self.rtt.observe(rtt / 1e6)
        self.retransmits += tcp.get("retransmits", 0)
