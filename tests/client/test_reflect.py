"""
The client's side of --reflect: the server's first line read before the
echo, said in one-shot mode, counted in load mode.
"""

from __future__ import annotations

import json

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife.client._reflect import LONGEST_LINE, Reflection, Reflections, ReflectionTally
from tcplife.protocols import reflectionLine

from . import test_oneshot
from .loadrun import FakeEndpoint, Run
from .test_client import Exchange

#: What a server that saw this client as itself writes first.
SEEN = reflectionLine("web-1", "127.0.0.1:40001", "127.0.0.1:9000")


class EchoClientReflectionTests(SynchronousTestCase):
    """
    One exchange: the line first, then the echo, checked as usual.
    """

    def test_theLineIsReadAndTheEchoCheckedAfterIt(self) -> None:
        """
        The reflection line, however split, is taken off the reply; the echo
        after it is checked, and the outcome carries the reflection.
        """
        x = Exchange(b"hello\n", reflect=True)
        x.pump()
        reply = SEEN + b"hello\n"
        for i in range(0, len(reply), 7):
            x.connection.dataReceived(reply[i : i + 7])
        x.serverCloses(Failure(ConnectionDone()))
        outcome = x.outcome()
        self.assertTrue(outcome.ok, outcome.describe())
        self.assertEqual((outcome.received, outcome.expected), (6, 6))
        self.assertEqual(
            outcome.reflection, Reflection("web-1", "127.0.0.1:40001", "127.0.0.1:9000")
        )

    def test_aFirstLineThatIsNoReflectionIsAMismatch(self) -> None:
        """
        A reply that starts with anything but a reflection is a mismatch
        that says so (and shows the start of the line).
        """
        x = Exchange(b"hello\n", reflect=True)
        x.pump()
        x.connection.dataReceived(b"hello\n")
        x.serverCloses(Failure(ConnectionDone()))
        outcome = x.outcome()
        self.assertEqual(outcome.problem, "mismatch")
        self.assertEqual(
            outcome.describe(),
            "the server's first line is no reflection (--reflect): 'hello'",
        )

    def test_noNewlineInTheFirstFewKilobytesIsAMismatch(self) -> None:
        """
        A first line longer than any reflection is not waited for without
        end: the exchange fails as a mismatch.
        """
        x = Exchange(b"hello\n", reflect=True)
        x.pump()
        x.connection.dataReceived(b"{" * (LONGEST_LINE + 1))
        self.assertTrue(x.transport.disconnected)
        x.serverCloses(Failure(ConnectionDone()))
        self.assertIn("no newline in its first 4096 bytes", x.outcome().describe())

    def test_withoutReflectTheLineIsAMismatch(self) -> None:
        """
        Without --reflect, a reflecting server's line is no echo.
        """
        x = Exchange(b"hello\n")
        x.pump()
        x.connection.dataReceived(SEEN + b"hello\n")
        x.serverCloses(Failure(ConnectionDone()))
        self.assertEqual(x.outcome().problem, "mismatch")


class OneShotReflectionTests(SynchronousTestCase):
    """
    One-shot mode says who answered, and whether it saw the client's own
    address.
    """

    start = test_oneshot.OneShotTests.start

    def exchange(self, line: bytes) -> str:
        endpoint = FakeEndpoint()
        self.start(endpoint, reflect=True)  # type: ignore[arg-type]
        [(connection, transport)] = endpoint.connections
        transport.producer.resumeProducing()
        transport.producer.resumeProducing()
        connection.dataReceived(line + transport.value())
        connection.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.statuses, [0])
        return self.errors.getvalue()

    def test_saysWhoAnsweredAndThatItSawTheClientsOwnAddress(self) -> None:
        """
        A server that saw the client's own address and port: one line names
        it and says so.
        """
        said = self.exchange(reflectionLine("web-1", "127.0.0.1:40000", "127.0.0.1:9000"))
        self.assertEqual(
            said,
            "tcpclient: answered by web-1, which saw this client as 127.0.0.1:40000 "
            "(this client's own address) on 127.0.0.1:9000\n",
        )

    def test_saysWhenTheServerSawAnotherAddress(self) -> None:
        """
        A server that saw another address (a balancer's, not passed on): the
        line gives both.
        """
        said = self.exchange(reflectionLine("web-2", "10.0.0.5:33000", "10.0.0.9:9001"))
        self.assertIn("saw this client as 10.0.0.5:33000 (this client is 127.0.0.1:40000)", said)


class LoadReflectionTests(SynchronousTestCase):
    """
    Load mode: connections counted by who answered and whom it saw.
    """

    def test_reportCountsServersAndClientAddressesSeen(self) -> None:
        """
        Each connection's line is read before its echo; the report counts
        connections per server, per client host seen, and how many saw the
        client's own address.
        """
        r = Run(connections=3, size=10, count=6, reflect=True)
        r.run.start()
        for index, (connection, transport) in enumerate(r.open()):
            own = f"127.0.0.1:{transport.getHost().port}"
            seen = own if index < 2 else "10.0.0.5:1234"
            connection.dataReceived(reflectionLine(f"web-{index % 2}", seen, "127.0.0.1:9000"))
        r.echoAll()
        r.echoAll()
        report = r.report()
        self.assertEqual((report.messages, report.errorCount), (6, 0))
        document = json.loads(json.dumps(report.toJSON()))
        self.assertEqual(
            document["reflect"],
            {
                "servers": {"web-0": 2, "web-1": 1},
                "clients": {"127.0.0.1": 2, "10.0.0.5": 1},
                "own_address": 2,
                "connections": 3,
            },
        )
        self.assertEqual(
            report.render().splitlines()[-2:],
            [
                "  answered by  web-0 2, web-1 1",
                "  client seen  127.0.0.1 2, 10.0.0.5 1 (2 of 3 with this client's own address)",
            ],
        )

    def test_connectPatternReadsEachConnectionsLine(self) -> None:
        """
        With --pattern connect, every connection's line is read and counted.
        """
        r = Run(connections=1, size=4, count=3, pattern="connect", reflect=True)
        r.run.start()
        for _ in range(3):
            [(connection, transport)] = r.open()
            line = reflectionLine("solo", "127.0.0.1:1", "127.0.0.1:9000")
            connection.dataReceived(line + transport.value())
            r.closeLost()
        report = r.report()
        self.assertEqual(report.messages, 3)
        assert report.reflections is not None
        self.assertEqual(
            (report.reflections.servers, report.reflections.connections), ((("solo", 3),), 3)
        )

    def test_aLineThatIsNoReflectionIsCountedAsAMismatch(self) -> None:
        """
        A connection whose first line is no reflection fails as a mismatch,
        and the run says so once.
        """
        r = Run(connections=1, size=4, count=1, reflect=True)
        r.run.start()
        [(connection, transport)] = r.open()
        connection.dataReceived(transport.value() + b"\n")
        r.closeLost()
        r.run.stop()
        self.assertEqual(dict(r.report().errors)["mismatch"], 1)
        [warning] = [e for e in r.recorded.events if "no reflection" in str(e.get("reason"))]
        self.assertEqual(warning["conn_id"], connection.connId)

    def test_withoutReflectTheReportHasNoSuchSection(self) -> None:
        """
        Without --reflect, neither form of the report has the section.
        """
        r = Run(connections=1, size=4, count=1)
        r.run.start()
        r.echoAll()
        report = r.report()
        self.assertNotIn("reflect", report.toJSON())
        self.assertNotIn("answered by", report.render())


class TallyTests(SynchronousTestCase):
    """
    The tally's own rules.
    """

    def test_ipv6HostsAreCountedWithoutTheirPort(self) -> None:
        """
        A bracketed IPv6 address is counted by its host, as an IPv4 one is.
        """
        tally = ReflectionTally()
        for port in (1, 2):
            tally.add(Reflection("s", f"[::1]:{port}", "[::1]:9000"), f"[::1]:{port}")
        summary = tally.summary()
        self.assertEqual((summary.clients, summary.ownAddress), ((("[::1]", 2),), 2))

    def test_severalRunsAddUpThroughTheirJSON(self) -> None:
        """
        Two runs' reflections, each through its JSON (as a load worker
        sends its report), add up server by server and host by host.
        """
        first, second = ReflectionTally(), ReflectionTally()
        first.add(Reflection("web-1", "10.0.0.5:1", "10.0.0.1:80"), "10.0.0.5:1")
        first.add(Reflection("web-2", "10.0.0.5:2", "10.0.0.1:80"), "10.0.0.7:2")
        second.add(Reflection("web-2", "10.0.0.6:3", "10.0.0.1:80"), "10.0.0.6:3")
        parts = [Reflections.fromJSON(t.summary().toJSON()) for t in (first, second)]
        self.assertEqual(
            Reflections.added(parts).toJSON(),
            {
                "servers": {"web-2": 2, "web-1": 1},
                "clients": {"10.0.0.5": 2, "10.0.0.6": 1},
                "own_address": 2,
                "connections": 3,
            },
        )
