"""
The kernel's view beside the load report's own latencies: each connection's
round-trip time as TCP measured it (at close, and sampled now and then on
long-lived connections) and the segments it retransmitted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import attrs
from hdrh.histogram import HdrHistogram

from ..internet import tcpInfoNow
from ..protocols import TrackedConnection
from ._report import Latency
from ._tally import bucketed

#: Seconds between samples of the open connections' TCP_INFO: a timer, not
#: a read per message.
SAMPLE_INTERVAL = 1.0

#: The longest round-trip time recorded, in microseconds (TCP's RTO ceiling
#: is 120 s; a minute is far past any path worth measuring).
_LONGEST_RTT_US = 60_000_000


@attrs.frozen
class KernelReport:
    """
    What the kernel measured on a run's connections.

    @ivar rtt: TCP's smoothed round-trip times, in microseconds: one per
        connection at its close, and one per open connection per sample.
    @ivar retransmits: Segments retransmitted on every connection of the
        run (the closed ones' totals, and the open ones' so far).
    """

    rtt: Latency
    retransmits: int

    def toJSON(self) -> dict[str, Any]:
        return {
            "rtt_us": {"count": self.rtt.count, **self.rtt.byName()},
            "retransmits": self.retransmits,
        }


class KernelTally:
    """
    Gathers a run's L{KernelReport}.
    """

    def __init__(self) -> None:
        self._rtt = HdrHistogram(1, _LONGEST_RTT_US, 3)
        # Counted by bucket as each connection closes (the histogram's
        # record_value is about ten dict increments), recorded when read.
        self._pending: defaultdict[int, int] = defaultdict(int)
        self.retransmits = 0

    @property
    def rtt(self) -> HdrHistogram:
        """
        The round-trip times so far.
        """
        record = self._rtt.record_value
        for value, count in self._pending.items():
            record(value, count)
        self._pending.clear()
        return self._rtt

    def _record(self, tcp: dict[str, int]) -> None:
        rtt = tcp.get("rtt_us")
        if rtt is not None:
            self._pending[bucketed(min(max(rtt, 1), _LONGEST_RTT_US))] += 1

    def closed(self, connection: TrackedConnection) -> None:
        """
        A connection is gone: its view at close counts.
        """
        tcp = connection.tcp
        if tcp is not None:
            self._record(tcp)
            self.retransmits += tcp.get("retransmits", 0)

    def sample(self, connections: Iterable[TrackedConnection]) -> None:
        """
        Record the round-trip time of every open connection now.
        """
        for connection in connections:
            tcp = tcpInfoNow(connection)
            if tcp is not None:
                self._record(tcp)

    def add(self, rtt: HdrHistogram, retransmits: int) -> None:
        """
        Add another tally's figures (a worker's, for the whole run's).
        """
        self.rtt.add(rtt)
        self.retransmits += retransmits

    def report(self, openConnections: Iterable[TrackedConnection] = ()) -> KernelReport | None:
        """
        The view so far, with the open connections' retransmissions; C{None}
        if the kernel said nothing (UNIX sockets).
        """
        retransmits = self.retransmits
        for connection in openConnections:
            tcp = tcpInfoNow(connection)
            if tcp is not None:
                self._record(tcp)
                retransmits += tcp.get("retransmits", 0)
        if not self.rtt.get_total_count():
            return None
        return KernelReport(rtt=Latency.fromHistogram(self.rtt), retransmits=retransmits)
