"""
One settings path: a server's defaults in L{ServerSettings}, a subclass's
class attributes over them, given settings and keyword arguments over those,
and every part of the server reading the factory's settings.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory, ServerSettings
from tcplife.server import Drainer, serverService
from tcplife.testing import EventRecorder

from ..protocols.test_connection import Upper
from .test_timeouts import Server


class Patient(LifecycleServerFactory):
    """
    A subclass with defaults of its own, as class attributes.
    """

    idleTimeout = 30.0
    maxConnections = 7


class SettingsTests(SynchronousTestCase):
    """
    Where a factory's settings come from, each overriding the one before.
    """

    def test_defaultsAreServerSettings(self) -> None:
        """
        A factory given nothing serves with ServerSettings' defaults.
        """
        factory = LifecycleServerFactory(clock=MemoryReactorClock())
        self.assertEqual(factory.settings, ServerSettings())
        self.assertEqual(
            (factory.settings.closeTimeout, factory.settings.shutdownTimeout), (5.0, 10.0)
        )

    def test_subclassAttributesAreItsDefaults(self) -> None:
        """
        A subclass's class attributes replace ServerSettings' defaults, and
        its instances report them.
        """
        factory = Patient(clock=MemoryReactorClock())
        self.assertEqual(factory.settings, Patient.defaultSettings())
        self.assertEqual((factory.settings.idleTimeout, factory.settings.maxConnections), (30, 7))
        self.assertEqual((factory.idleTimeout, factory.maxConnections), (30, 7))

    def test_subclassIdleTimeoutIsTheOneApplied(self) -> None:
        """
        A subclass that sets idleTimeout = 30 has its quiet connections
        closed after 30 seconds, not before.
        """
        clock = MemoryReactorClock()
        recorded = EventRecorder()
        factory = Patient(clock=clock, events=recorded.log)
        connection = factory.buildProtocol(None)
        assert connection is not None
        connection.makeConnection(StringTransport())  # type: ignore[arg-type]
        clock.pump([1.0] * 29)
        self.assertFalse(connection.disconnecting)
        clock.pump([1.0] * 2)
        self.assertTrue(connection.disconnecting)
        self.assertEqual(connection.how, "timeout")

    def test_givenSettingsReplaceTheClassDefaults(self) -> None:
        """
        Settings given to the factory are its settings, the subclass's
        defaults included only when they were started from them.
        """
        given = ServerSettings(idleTimeout=5)
        self.assertEqual(Patient(settings=given).settings, given)
        kept = Patient.defaultSettings().evolve(closeTimeout=2)
        self.assertEqual(
            (Patient(settings=kept).settings.idleTimeout, Patient(settings=kept).closeTimeout),
            (30, 2),
        )

    def test_keywordArgumentsOverrideOneFieldEach(self) -> None:
        """
        maxConnections, idleTimeout, closeTimeout and trace as keyword
        arguments override the settings' field of that name and no other.
        """
        factory = LifecycleServerFactory(
            settings=ServerSettings(idleTimeout=5, closeTimeout=1, backlog=64),
            idleTimeout=7,
            maxConnections=3,
            trace=True,
        )
        self.assertEqual(
            factory.settings,
            ServerSettings(idleTimeout=7, closeTimeout=1, backlog=64, maxConnections=3, trace=True),
        )
        self.assertTrue(factory.events.trace)

    def test_settingsProtocolIsServed(self) -> None:
        """
        The settings' protocol is what the factory builds.
        """
        factory = LifecycleServerFactory(settings=ServerSettings(protocol=Upper))
        connection = factory.buildProtocol(None)
        assert connection is not None
        self.assertIsInstance(connection.wrappedProtocol, Upper)  # type: ignore[union-attr]

    def test_badValuesAreRefused(self) -> None:
        """
        A value out of its range, or a lever that does not exist, is refused
        with a ValueError naming the field.
        """
        for field, value in [
            ("port", 70000),
            ("backlog", 0),
            ("maxConnections", 0),
            ("idleTimeout", 0),
            ("closeTimeout", -1),
            ("shutdownTimeout", -1),
        ]:
            error = self.assertRaises(ValueError, ServerSettings, **{field: value})
            self.assertIn(field, str(error))
        error = self.assertRaises(ValueError, ServerSettings, leversOff={"turbo"})
        self.assertIn("'turbo'", str(error))
        self.assertIn("write-at-once", str(error))


class PartsReadTheSettingsTests(SynchronousTestCase):
    """
    The gate, the sweeper and the drain read the factory's settings.
    """

    def test_serverPartsShareTheFactorysSettings(self) -> None:
        """
        In a server built from settings, the factory's settings are those,
        and its gate and sweeper hold the very same object.
        """
        settings = ServerSettings(port=9100, maxConnections=4, idleTimeout=8, closeTimeout=2)
        service = serverService(settings, MemoryReactorClock())
        factory = service.factory
        self.assertEqual(factory.settings, settings)
        self.assertIs(factory.gate.settings, factory.settings)
        self.assertEqual(factory.gate.maxConnections, 4)
        assert factory.sweeper is not None
        self.assertIs(factory.sweeper.settings, factory.settings)
        assert service.drainer is not None
        self.assertIs(service.drainer.factory, factory)

    def test_drainTimesAreTheShutdownAndCloseTimeouts(self) -> None:
        """
        The drain's deadline comes at the settings' shutdownTimeout, and it
        then gives the open connections their closeTimeout before it aborts
        them.
        """
        server = Server(shutdownTimeout=4, closeTimeout=3)
        connection, _ = server.connect()
        Drainer(server.factory, server.clock).drain()
        server.clock.advance(3.9)
        self.assertEqual(server.recorded.of("drain-deadline"), [])
        server.clock.advance(0.1)
        [deadline] = server.recorded.of("drain-deadline")
        self.assertEqual(deadline["grace_s"], 3)
        server.clock.advance(2.9)
        self.assertIsNone(connection.how)
        server.clock.advance(0.1)
        self.assertEqual(connection.how, "abort")
