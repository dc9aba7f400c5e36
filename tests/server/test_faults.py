"""
Fault specs and the draw that picks which connections misbehave.
"""

from __future__ import annotations

import math

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory, TrackedConnection
from tcplife.server import (
    KINDS,
    Fault,
    FaultPlan,
    FaultSpec,
    FaultSpecError,
    ServerCollector,
    ServerSettings,
    parseFaultSpec,
)
from tcplife.testing import EventRecorder

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


class SpecTests(SynchronousTestCase):
    """
    What each spec means, and one sentence for each mistake.
    """

    def test_eachFaultWithItsValue(self) -> None:
        """
        Every kind is read with its value: milliseconds (or a range of
        them), bytes, bytes per second, or none.
        """
        cases = {
            "delay=50": Fault("delay", 50, 50),
            "delay=50-200": Fault("delay", 50, 200),
            "accept-delay=2.5": Fault("accept-delay", 2.5, 2.5),
            "throttle=1024": Fault("throttle", 1024, 1024),
            "stop-reading-after=0": Fault("stop-reading-after", 0, 0),
            "close-after=100": Fault("close-after", 100, 100),
            "reset-after=7": Fault("reset-after", 7, 7),
            "drop-input": Fault("drop-input"),
            "half-close-first": Fault("half-close-first"),
            "never-accept": Fault("never-accept"),
        }
        self.assertEqual(sorted({fault.kind for fault in cases.values()}), sorted(KINDS))
        for text, fault in cases.items():
            self.assertEqual(parseFaultSpec(text), FaultSpec((fault,), 1.0), text)

    def test_severalFaultsAndAShare(self) -> None:
        """
        A spec's faults apply together, to the share p says (spaces allowed).
        """
        self.assertEqual(
            parseFaultSpec("delay=50-200, close-after=10 ,p=0.1"),
            FaultSpec((Fault("delay", 50, 200), Fault("close-after", 10, 10)), 0.1),
        )

    def test_mistakesAreOneSentenceThatNamesThem(self) -> None:
        """
        Each mistake is refused with a sentence that names what is wrong.
        """
        cases = {
            "": "names no fault",
            "p=0.5": "names no fault",
            "dealy=5": "'dealy' is no fault; the faults are accept-delay, never-accept, delay",
            "delay": "delay needs a value: delay=MS or delay=MS-MS",
            "delay=": "delay needs a value",
            "delay=soon": "delay must be milliseconds",
            "delay=-5": "delay must be milliseconds",
            "delay=200-50": "runs backwards",
            "delay=5,delay=6": "it gives delay twice",
            "throttle=0": "throttle must be a whole number of bytes per second, 1 or more",
            "close-after=1.5": "close-after must be a whole number of bytes, not '1.5'",
            "drop-input=yes": "drop-input takes no value, not 'yes'",
            "reset-after=1,p=0": "p must be a share above 0 and at most 1",
            "reset-after=1,p=2": "p must be a share above 0 and at most 1",
            "reset-after=1,p": "p must be a share",
            "reset-after=1,p=0.5,p=0.5": "it gives p twice",
            "reset-after=1,,p=0.5": "it holds an empty item",
        }
        for text, fragment in cases.items():
            with self.assertRaises(FaultSpecError, msg=text) as raised:
                parseFaultSpec(text)
            message = str(raised.exception)
            self.assertIn(fragment, message, text)
            self.assertNotIn("\n", message)


class DrawTests(SynchronousTestCase):
    """
    One Random(seed) per server, drawn connection by connection.
    """

    def kinds(self, specs: list[str], seed: int, count: int = 200) -> list[tuple[str, ...]]:
        plan = FaultPlan([parseFaultSpec(spec) for spec in specs], seed)
        return [plan.take().kinds for _ in range(count)]

    def test_theSameSeedDrawsTheSameConnections(self) -> None:
        """
        Two plans with the same seed pick the same connections, in order;
        another seed picks others.
        """
        specs = ["reset-after=0,p=0.3", "delay=5,p=0.5"]
        self.assertEqual(self.kinds(specs, 42), self.kinds(specs, 42))
        self.assertNotEqual(self.kinds(specs, 42), self.kinds(specs, 43))

    def test_aShareTouchesThatShareOfConnections(self) -> None:
        """
        p=0.1 applies to about a tenth of the connections.
        """
        drawn = self.kinds(["drop-input,p=0.1"], seed=7, count=10_000)
        touched = sum(1 for kinds in drawn if kinds)
        self.assertTrue(800 < touched < 1200, touched)

    def test_eachSpecDrawsOnItsOwn(self) -> None:
        """
        With two specs of p=0.5 a connection may get either, both or none,
        and the faults of one spec always come together.
        """
        drawn = set(self.kinds(["delay=1,throttle=9,p=0.5", "drop-input,p=0.5"], seed=3))
        self.assertEqual(
            drawn, {(), ("delay", "throttle"), ("drop-input",), ("delay", "drop-input", "throttle")}
        )

    def test_aConnectionsChoiceDependsOnlyOnItsPlace(self) -> None:
        """
        Looking ahead (as the admission gate does) changes nothing: the
        draws taken are the ones peeked, in order.
        """
        plan = FaultPlan([parseFaultSpec("close-after=1,p=0.5")], seed=5)
        peeked = [plan.peek(i) for i in range(10)]
        self.assertEqual([plan.take() for _ in range(10)], peeked)
        self.assertEqual(
            [d.kinds for d in peeked], [k for k in self.kinds(["close-after=1,p=0.5"], 5, 10)]
        )

    def test_acceptWaits(self) -> None:
        """
        A draw says how long its connection waits in the accept queue:
        accept-delay's milliseconds in seconds, forever for never-accept,
        not at all otherwise.
        """
        waits = [
            FaultPlan([parseFaultSpec(spec)], seed=1).take().acceptWait()
            for spec in ("accept-delay=250", "accept-delay=100-300", "never-accept", "delay=9")
        ]
        self.assertEqual(waits[0], 0.25)
        assert waits[1] is not None
        self.assertTrue(0.1 <= waits[1] <= 0.3)
        self.assertEqual(waits[2], math.inf)
        self.assertIsNone(waits[3])

    def test_theFactoryDrawsInAcceptOrderAndCountsByKind(self) -> None:
        """
        The factory takes one draw per connection it builds, in that order,
        lists its kinds in the accept event, and counts them by kind.
        """
        recorder = EventRecorder()
        specs = [parseFaultSpec("reset-after=1000,p=0.5")]
        factory = LifecycleServerFactory(
            events=recorder.log, settings=ServerSettings(fault=specs, seed=11)
        )
        for _ in range(20):
            connection = factory.buildProtocol(PEER)
            assert isinstance(connection, TrackedConnection)
            factory.connectionOpened(connection)
        twin = FaultPlan(specs, seed=11)
        expected = [twin.take().kinds for _ in range(20)]
        self.assertEqual(
            [tuple(accept.get("fault", ())) for accept in recorder.of("accept")], expected
        )
        assert factory.faults is not None
        self.assertEqual(factory.faults.counts["reset-after"], expected.count(("reset-after",)))
        self.assertTrue(0 < expected.count(()) < 20)

    def test_describeGivesTheSpecsBack(self) -> None:
        """
        A plan describes its specs as --fault would take them.
        """
        specs = ["delay=50-200,p=0.1", "never-accept", "throttle=512"]
        plan = FaultPlan([parseFaultSpec(spec) for spec in specs], seed=0)
        self.assertEqual(plan.describe(), "; ".join(specs))


class MetricsTests(SynchronousTestCase):
    """
    tcplife_faults_total counts the connections each kind touched.
    """

    def faultCounts(self, factory: LifecycleServerFactory) -> dict[str, float]:
        return {
            sample.labels["kind"]: sample.value
            for family in ServerCollector(factory, lambda: []).collect()
            if family.name == "tcplife_faults"
            for sample in family.samples
            if sample.name == "tcplife_faults_total"
        }

    def test_countsByKind(self) -> None:
        """
        Every kind has a series; each counts the connections it was applied
        to (both kinds of a spec, for each connection that drew it).
        """
        settings = ServerSettings(fault=[parseFaultSpec("delay=1,close-after=5,p=0.5")], seed=2)
        factory = LifecycleServerFactory(events=EventRecorder().log, settings=settings)
        plan = factory.faults
        assert plan is not None
        for _ in range(40):
            factory.buildProtocol(PEER)
        counts = self.faultCounts(factory)
        self.assertEqual(sorted(counts), sorted(KINDS))
        self.assertEqual(counts["delay"], counts["close-after"])
        self.assertTrue(0 < counts["delay"] < 40, counts)
        self.assertEqual(counts["delay"], plan.counts["delay"])
        self.assertEqual(sum(counts.values()), 2 * counts["delay"])

    def test_zeroWithoutFaults(self) -> None:
        """
        A server without --fault serves every kind's series, at 0.
        """
        self.assertEqual(self.faultCounts(LifecycleServerFactory()), dict.fromkeys(KINDS, 0))
