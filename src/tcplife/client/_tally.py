"""
The books of a load run: per target, the messages done, the late ones, the
errors by kind, and the round trips, first counted by microsecond on the
per-message path, then folded into HDR histograms on a timer.
"""

from __future__ import annotations

from collections import defaultdict

from hdrh.histogram import HdrHistogram

#: Round trips are recorded in microseconds, up to an hour.
LONGEST_LATENCY_US = 3_600_000_000


#: Below this many microseconds the histograms keep every value exactly;
#: above it, 3 significant digits keep the top 11 bits of a value (HDR's
#: sub-bucket count, 2048, for these settings).
EXACT_BELOW = 2048
KEPT_BITS = 11


def bucketed(microseconds: int) -> int:
    """
    The lowest value the histograms hold in the same bucket as
    C{microseconds}.

    Counting round trips by it loses nothing a histogram keeps, and a fold
    then records each bucket once rather than each distinct microsecond
    (a histogram's C{record_value} costs about ten times a dict increment,
    and at a few milliseconds nearly every round trip is a microsecond of
    its own).  The per-message path spells this out rather than call it.
    """
    if microseconds < EXACT_BELOW:
        return microseconds
    shift = microseconds.bit_length() - KEPT_BITS
    return microseconds >> shift << shift


def newHistogram() -> HdrHistogram:
    """
    An empty histogram of round trips in microseconds, with 3 significant
    digits, as every part of a run (and every worker) records them.
    """
    return HdrHistogram(1, LONGEST_LATENCY_US, 3)


class Tally:
    """
    What the connections to one target did.

    The per-message path adds to L{latencies} (and, with a timetable, to
    L{services}), by L{bucketed} microseconds: a dict increment costs a
    tenth of a histogram record, and L{fold} moves the counts into the
    histograms every timer tick, one record per bucket.

    @ivar name: The target, as the user named it.
    @ivar latencies: Round trips from each message's intended send time, in
        L{bucketed} microseconds, not yet folded.
    @ivar services: Round trips from each message's actual send, not yet
        folded; C{None} in a closed loop, where the two are the same.
    @ivar latency: The folded L{latencies}.
    @ivar service: The folded L{services}; in a closed loop, L{latency}
        itself.
    @ivar done: Messages whose every byte came back identical.
    @ivar late: Messages sent more than L{tcplife.client._load.LATE_AFTER}
        after their intended time.
    @ivar errors: Errors by kind.
    """

    def __init__(self, name: str, *, openLoop: bool) -> None:
        self.name = name
        self.latencies: defaultdict[int, int] = defaultdict(int)
        self.services: defaultdict[int, int] | None = defaultdict(int) if openLoop else None
        self.latency = newHistogram()
        self.service = newHistogram() if openLoop else self.latency
        self.done = 0
        self.late = 0
        self.errors: defaultdict[str, int] = defaultdict(int)

    def fold(self, alsoInto: HdrHistogram | None = None) -> None:
        """
        Move the round trips counted since the last fold into the
        histograms, and the latencies also into C{alsoInto} (an interval's).
        """
        _record(self.latencies, self.latency, alsoInto)
        if self.services is not None:
            _record(self.services, self.service, None)


def _record(
    counts: defaultdict[int, int], histogram: HdrHistogram, also: HdrHistogram | None
) -> None:
    record = histogram.record_value
    for value, count in counts.items():
        record(value, count)
    if also is not None:
        recordAlso = also.record_value
        for value, count in counts.items():
            recordAlso(value, count)
    counts.clear()


def added(histograms: list[HdrHistogram]) -> HdrHistogram:
    """
    One histogram holding the counts of all of C{histograms}.
    """
    if len(histograms) == 1:
        return histograms[0]
    total = newHistogram()
    for histogram in histograms:
        total.add(histogram)
    return total
