"""
tcplife.testing: what users test their own protocols with.
"""

from __future__ import annotations

from twisted.protocols.basic import LineReceiver
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory
from tcplife.testing import ServedConnection


class Shout(LineReceiver):
    """
    A user's line protocol: each line back in capitals.
    """

    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        self.sendLine(line.upper())


class ServedConnectionTests(SynchronousTestCase):
    """
    A served connection behaves as the socket would, with every event.
    """

    def test_protocolOutputAndLifecycleOfAHalfClosedExchange(self) -> None:
        """
        What the protocol writes is what C{sent} returns, and a peer that
        half-closes ends the connection with accept, half-close and close.
        """
        served = ServedConnection(protocol=Shout)
        served.receive(b"hi\nthere\n")
        self.assertEqual(served.sent(), b"HI\nTHERE\n")
        self.assertEqual(served.sent(), b"")
        served.peerHalfCloses()
        self.assertEqual(served.events.phases(), ["accept", "half-close", "close"])
        close = served.closeEvent
        assert close is not None
        self.assertEqual(
            (close["how"], close["initiator"], close["bytes_in"], close["bytes_out"]),
            ("fin", "peer", 9, 9),
        )

    def test_resetPeerIsAReset(self) -> None:
        """
        A peer's RST ends the connection with C{how=reset}.
        """
        served = ServedConnection()
        served.peerResets()
        close = served.closeEvent
        assert close is not None
        self.assertEqual((close["how"], close["initiator"]), ("reset", "peer"))

    def test_theFactorysSettingsApply(self) -> None:
        """
        The factory's settings hold as on a socket: an idle timeout closes a
        quiet connection once the clock passes it.
        """
        served = ServedConnection(idleTimeout=2.0)
        served.clock.advance(1.0)
        self.assertIsNone(served.closeEvent)
        served.clock.advance(2.0)
        self.assertTrue(served.finishClose())
        close = served.closeEvent
        assert close is not None
        self.assertEqual((close["how"], close["initiator"]), ("timeout", "local"))

    def test_aFactorySubclassServesItsOwnProtocol(self) -> None:
        """
        Given a factory class, the connection is that factory's, serving
        the protocol the class names.
        """

        class ShoutingFactory(LifecycleServerFactory):
            protocol = Shout

        served = ServedConnection(factoryClass=ShoutingFactory)
        self.assertIsInstance(served.factory, ShoutingFactory)
        served.receive(b"a\n")
        self.assertEqual(served.sent(), b"A\n")


class EventRecorderTests(SynchronousTestCase):
    """
    The recorder keeps events and tells of matching ones.
    """

    def test_whenFiresForAnEventStillToCome(self) -> None:
        """
        C{when} fires once an event with the given fields arrives.
        """
        served = ServedConnection()
        seen: list[dict[str, object]] = []
        served.events.when(lifecycle="close").addCallback(seen.append)
        self.assertEqual(seen, [])
        served.peerHalfCloses()
        self.assertEqual([event["lifecycle"] for event in seen], ["close"])
        served.events.when(lifecycle="accept").addCallback(seen.append)
        self.assertEqual([event["lifecycle"] for event in seen], ["close", "accept"])
