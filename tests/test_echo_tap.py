"""
C{twist tcpecho}'s options and the service they build.
"""

from __future__ import annotations

from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleServerFactory, ListenFailed
from tcplife._listening import Listener
from tcplife.echo_tap import Options, makeService

from .helpers import RecordedEvents, assertRejected
from .test_connection import Upper


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class OptionTests(SynchronousTestCase):
    """
    Options follow Twisted's conventions and reject bad values in one sentence.
    """

    def test_defaults(self) -> None:
        """
        With no options the server listens on port 9000, backlog 128.
        """
        options = parse()
        self.assertEqual((options["port"], options["backlog"]), (9000, 128))
        self.assertEqual((options["listen"], options["trace"]), ([], 0))

    def test_listenAloneDropsTheDefaultPort(self) -> None:
        """
        With --listen and no --port, nothing listens on 9000.
        """
        options = parse("--listen", "tcp:0", "--listen", "unix:/tmp/x.sock")
        self.assertIsNone(options["port"])
        self.assertEqual(options["listen"], ["tcp:0", "unix:/tmp/x.sock"])

    def test_listenWithPortKeepsBoth(self) -> None:
        """
        --port and --listen together listen on both.
        """
        options = parse("--port", "9001", "--listen", "tcp:0")
        self.assertEqual((options["port"], options["listen"]), (9001, ["tcp:0"]))

    def assertRejected(self, argv: list[str], *fragments: str) -> None:
        assertRejected(self, parse, argv, *fragments)

    def test_interfaceWithOnlyListenIsRefused(self) -> None:
        """
        --interface with only --listen endpoints (which carry their own
        address) is refused instead of silently ignored.
        """
        self.assertRejected(
            ["--listen", "tcp:0", "--interface", "127.0.0.1"],
            "--interface applies to --port",
            "interface= in the --listen endpoint",
        )

    def test_backlogWithOnlyListenIsRefused(self) -> None:
        """
        --backlog with only --listen endpoints is refused, pointing at the
        endpoint's own backlog= parameter.
        """
        self.assertRejected(
            ["--listen", "tcp:0", "--backlog", "7"],
            "--backlog applies to --port",
            "backlog= in the --listen endpoint",
        )

    def test_interfaceAndBacklogApplyToPortBesideListen(self) -> None:
        """
        With --port as well as --listen, --interface and --backlog are
        accepted: they apply to --port.
        """
        options = parse(
            "--port", "0", "--listen", "tcp:0", "--interface", "127.0.0.1", "--backlog", "7"
        )
        self.assertEqual((options["interface"], options["backlog"]), ("127.0.0.1", 7))

    def test_portOutOfRange(self) -> None:
        """
        A port above 65535 is rejected, naming the value.
        """
        self.assertRejected(["--port", "70000"], "--port", "'70000'", "0 to 65535")

    def test_portNotANumber(self) -> None:
        """
        A port that is not a number is rejected, naming the value.
        """
        self.assertRejected(["--port", "abc"], "--port", "'abc'")

    def test_backlogZeroOrNegative(self) -> None:
        """
        A backlog below 1 is rejected.
        """
        self.assertRejected(["--backlog", "0"], "--backlog", "'0'")
        self.assertRejected(["--backlog", "-5"], "--backlog", "'-5'")

    def test_unknownEndpointType(self) -> None:
        """
        An endpoint type Twisted does not know is rejected, naming it.
        """
        self.assertRejected(["--listen", "bogus:9000"], "--listen", "'bogus:9000'", "bogus")

    def test_systemdWithoutInheritedSocket(self) -> None:
        """
        A systemd endpoint with nothing inherited is a usage error, not an
        IndexError traceback.
        """
        self.assertRejected(
            ["--listen", "systemd:domain=INET:index=0"], "not usable", "socket-activated"
        )

    def test_protocolMustBeAProtocol(self) -> None:
        """
        --protocol names an importable Protocol subclass.
        """
        self.assertRejected(["--protocol", "no.such.module.Thing"], "--protocol", "imported")
        self.assertRejected(["--protocol", "socket.socket"], "not a subclass")

    def test_protocolAndFactoryExclude(self) -> None:
        """
        --protocol and --factory cannot both be given.
        """
        self.assertRejected(
            [
                "--protocol",
                "tests.test_connection.Upper",
                "--factory",
                "tcplife.LifecycleServerFactory",
            ],
            "not both",
        )


class ServiceTests(SynchronousTestCase):
    """
    The service listens with the reactor's listenTCP and the asked backlog.
    """

    def test_portUsesListenTCPWithBacklogAndInterface(self) -> None:
        """
        --port N --backlog B --interface I is listenTCP(N, f, backlog=B,
        interface=I), and the protocol is the echo.
        """
        reactor = MemoryReactorClock()
        options = parse("--port", "9123", "--backlog", "7", "--interface", "127.0.0.1")
        makeService(options, reactor).startService()
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, backlog, interface), (9123, 7, "127.0.0.1"))
        self.assertIsInstance(factory, LifecycleServerFactory)

    def test_eachListenIsAListener(self) -> None:
        """
        Every --listen endpoint listens with the same factory.
        """
        reactor = MemoryReactorClock()
        options = parse("--listen", "tcp:9200", "--listen", "tcp:9201:backlog=5")
        makeService(options, reactor).startService()
        ports = [(port, backlog) for port, _, backlog, _ in reactor.tcpServers]
        self.assertEqual(ports, [(9200, 50), (9201, 5)])
        self.assertIs(reactor.tcpServers[0][1], reactor.tcpServers[1][1])

    def test_protocolOption(self) -> None:
        """
        --protocol serves the named class through the lifecycle factory.
        """
        reactor = MemoryReactorClock()
        options = parse("--port", "0", "--protocol", "tests.test_connection.Upper")
        makeService(options, reactor).startService()
        factory = reactor.tcpServers[0][1]
        self.assertIs(factory.protocol, Upper)

    def test_listenEventCarriesAddressAndBacklog(self) -> None:
        """
        Listening emits C{listen} with the address and the backlog.
        """
        reactor = MemoryReactorClock()
        recorded = RecordedEvents()
        factory = LifecycleServerFactory(clock=reactor, events=recorded.log)
        from twisted.internet.endpoints import TCP4ServerEndpoint

        listener = Listener(
            TCP4ServerEndpoint(reactor, 9300, 11, ""),
            factory,
            "0.0.0.0:9300",
            recorded.log,
            reactor,
            11,
        )
        listener.startService()
        [listen] = recorded.of("listen")
        self.assertEqual(
            (listen["address"], listen["backlog"], listen["endpoint"]),
            ("0.0.0.0:9300", 11, "0.0.0.0:9300"),
        )
        listener.stopService()
        [stopped] = recorded.of("stop-listening")
        self.assertEqual(stopped["address"], "0.0.0.0:9300")

    def test_listenFailureIsOneLineExit(self) -> None:
        """
        A port that cannot be bound raises ListenFailed (a SystemExit) with
        one line naming the address and the reason.
        """
        error = OSError(98, "Address already in use")
        reactor = RaisingMemoryReactor(listenException=CannotListenError("", 9000, error))
        service = makeService(parse(), reactor)  # type: ignore[arg-type]
        failure = self.assertRaises(ListenFailed, service.startService)
        message = str(failure)
        self.assertEqual(message.count("\n"), 0)
        self.assertIn("0.0.0.0:9000", message)
        self.assertIn("Address already in use", message)
        self.assertIsInstance(failure, SystemExit)
