"""
Tests for the run's books: round trips counted by histogram bucket on the
per-message path lose nothing the HDR histograms keep.
"""

from __future__ import annotations

from typing import cast

import attrs
from hdrh.histogram import HdrHistogram
from twisted.trial.unittest import SynchronousTestCase

from tcplife import TrackedConnection
from tcplife.client import Latency
from tcplife.client._kernelview import KernelTally
from tcplife.client._tally import LONGEST_LATENCY_US, bucketed, newHistogram

from .loadrun import Run


def histogramOf(values: list[int]) -> HdrHistogram:
    histogram = newHistogram()
    for value in values:
        histogram.record_value(value)
    return histogram


@attrs.frozen
class Closed:
    """
    What the kernel's tally reads of a closed connection.
    """

    tcp: dict[str, int]


class BucketedTests(SynchronousTestCase):
    """
    L{bucketed} maps each value to its histogram bucket's lowest value.
    """

    def test_bucketedValuesFillTheSameBuckets(self) -> None:
        """
        Every value, exact below 2048 us and then at the histogram's 3
        significant digits up to an hour, lands in the bucket its raw value
        does, while values that share a bucket share one key.
        """
        values = list(range(70_000))
        value = 70_000
        while value < LONGEST_LATENCY_US:
            values += [value, value + 1, value * 2 - 1]
            value = value * 3 // 2
        raw = histogramOf(values)
        counted = histogramOf([bucketed(value) for value in values])
        self.assertEqual(list(raw.counts), list(counted.counts))
        self.assertEqual(Latency.fromHistogram(raw), Latency.fromHistogram(counted))
        self.assertEqual([bucketed(value) for value in range(2048)], list(range(2048)))
        # 2048 to 4095 us: two microseconds a bucket; 70,000 us: 32.
        self.assertEqual(
            {bucketed(value) for value in range(2048, 4096)}, set(range(2048, 4096, 2))
        )
        self.assertEqual(bucketed(70_031), 70_016)


class RoundTripCountsTests(SynchronousTestCase):
    """
    A run counts its round trips by bucket, and reports what a histogram of
    the raw round trips would.
    """

    def test_roundTripsAreCountedOnePerBucket(self) -> None:
        """
        A hundred round trips of 2048 to 2147 us, two to a bucket, are
        waiting to be folded as fifty counts, and the report's percentiles
        are those of the raw round trips.
        """
        r = Run(connections=1, size=8, count=100)
        r.run.start()
        [(connection, transport)] = r.open()
        for k in range(100):
            # Half a microsecond more, so that float rounding cannot take a
            # round trip into the microsecond below.
            r.clock.advance((2048 + k + 0.5) / 1e6)
            if k == 99:
                [target] = r.run.targets
                self.assertEqual(len(target.tally.latencies), 50)
            r.echo(connection, transport)
        report = r.report()
        raw = histogramOf([2048 + k for k in range(100)])
        self.assertEqual(report.latency, Latency.fromHistogram(raw))


class KernelRoundTripTests(SynchronousTestCase):
    """
    The kernel's round-trip times are counted by bucket too.
    """

    def test_kernelRoundTripsReportWhatTheirRawValuesWould(self) -> None:
        """
        Round-trip times at close, from a few to many thousands of
        microseconds, report the percentiles of a histogram of the raw
        values, with each connection's retransmissions added up.
        """
        tally = KernelTally()
        values = [3 + (k * 7919) % 90_000 for k in range(3000)]
        for value in values:
            tally.closed(cast(TrackedConnection, Closed({"rtt_us": value, "retransmits": 1})))
        report = tally.report()
        assert report is not None
        self.assertEqual(report.rtt, Latency.fromHistogram(histogramOf(values)))
        self.assertEqual(report.retransmits, 3000)
