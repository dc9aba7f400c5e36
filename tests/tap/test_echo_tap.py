"""
C{twist tcpecho}'s options and the service they build.
"""

from __future__ import annotations

import attrs
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock, RaisingMemoryReactor
from twisted.logger import LogLevel
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import tcplife
from tcplife import LifecycleServerFactory, ListenError, ServerSettings
from tcplife.server import parseFaultSpec
from tcplife.server._listening import Listener
from tcplife.tap.echo import Options, makeService
from tcplife.testing import EventRecorder

from ..certs import TLSMistakes
from ..helpers import assertRejected
from ..protocols.test_connection import Upper
from ..servers import temporaryDirectory


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


#: Server descriptions Twisted's parsers refuse in Python's words, fail on
#: later than parsing, or take without a word (backlog=-5 reaches listen()
#: as 0), and the sentence tcpecho says instead.
BAD_SERVER_DESCRIPTIONS = [
    ("", "it names no endpoint type (for example tcp:9000)."),
    ("9000", "it names no endpoint type; for TCP port 9000 write tcp:9000."),
    ("tcp", "tcp needs port (for example tcp:9000)."),
    ("tcp:", "port must be a whole number from 0 to 65535, not ''; a ':' inside a value"),
    ("tcp:abc", "port must be a whole number from 0 to 65535, not 'abc'."),
    ("tcp:70000", "port must be a whole number from 0 to 65535, not '70000'."),
    ("tcp:-1", "port must be a whole number from 0 to 65535, not '-1'."),
    ("tcp:9000:backlog=-5", "backlog must be a whole number from 1 to 65535, not '-5'."),
    ("tcp:9000:backlog=0", "backlog must be a whole number from 1 to 65535, not '0'."),
    ("tcp:9000:backlog=many", "backlog must be a whole number from 1 to 65535, not 'many'."),
    (
        "tcp:9000:bogus=1:color=red",
        "unknown parameters 'bogus', 'color' (tcp takes port, interface, backlog).",
    ),
    ("tcp:port=9000:127.0.0.1", "port is given twice, by position and as port=."),
    (
        "tcp:9000:127.0.0.1:5:more",
        "too many values without a name: tcp takes port, interface and backlog (in that "
        "order) without one; give the rest as name=value; a ':' inside a value is written",
    ),
    ("tcp:9000\\", "it ends in a '\\' that escapes nothing."),
    ("tcp6", "tcp6 needs port (for example tcp6:9000:interface=\\:\\:1)."),
    ("tcp6:x", "port must be a whole number from 0 to 65535, not 'x'."),
    # What a shell passes on for an unquoted tcp6:9000:interface=\:\:.
    (
        "tcp6:9000:interface=::",
        "interface is given twice, by position and as interface=; a ':' inside a value "
        "is written '\\:' (and the whole description quoted in a shell).",
    ),
    ("tcp6:9000:interface=127.0.0.1", "interface must be an IPv6 address, not '127.0.0.1'."),
    ("unix", "unix needs address (for example unix:/run/echo.sock)."),
    ("unix:", "address must name a socket path, not ''"),
    ("unix:/tmp/x.sock:mode=999", "mode must be octal permissions from 0 to 777, not '999'."),
    ("unix:/tmp/x.sock:lockfile=yes", "lockfile must be 0 or 1, not 'yes'."),
    ("unix:/tmp/x.sock:port=1", "unknown parameter 'port' (unix takes address, mode, backlog"),
    ("ssl:9443:sslmethod=SSLv2_METHOD", "sslmethod must be one of SSLv23_METHOD, "),
    ("systemd:index=0", "systemd needs domain (for example systemd:domain=INET:name=tcpecho)."),
    ("systemd:domain=INET", "systemd needs either index= or name= to pick the inherited socket"),
    ("systemd:domain=INET:index=0:name=x", "systemd needs either index= or name="),
    ("systemd:domain=IPX:index=0", "domain must be INET, INET6 or UNIX, not 'IPX'."),
    ("systemd:domain=INET:index=first", "index must be a whole number from 0 to 65536"),
    (
        "systemd:domain=INET:name=web",
        "no inherited socket named 'web' (is the process socket-activated, "
        "with FileDescriptorName=web?).",
    ),
    ("haproxy:", "haproxy: needs the endpoint to listen on (for example haproxy:tcp:9001)."),
    ("haproxy:tcp:abc", "port must be a whole number from 0 to 65535, not 'abc'."),
    ("haproxy:haproxy:tcp:9001", "haproxy: is given twice"),
    ("haproxy:bogus:1", "unknown endpoint type 'bogus'"),
    ("tls:/nonexistent", "path must name a folder of keys and certificates (*.pem), and "),
]


class OptionTests(SynchronousTestCase):
    """
    Options follow Twisted's conventions and reject bad values in one sentence.
    """

    def test_defaults(self) -> None:
        """
        With no options the settings are ServerSettings' own defaults: port
        9000, backlog 128, no endpoint, no trace.
        """
        settings = parse().settings
        self.assertEqual(settings, ServerSettings())
        self.assertEqual((settings.port, settings.backlog), (9000, 128))
        self.assertEqual((settings.listen, settings.trace), ((), False))

    def test_listenAloneDropsTheDefaultPort(self) -> None:
        """
        With --listen and no --port, nothing listens on 9000.
        """
        settings = parse("--listen", "tcp:0", "--listen", "unix:/tmp/x.sock").settings
        self.assertIsNone(settings.port)
        self.assertEqual(settings.listen, ("tcp:0", "unix:/tmp/x.sock"))

    def test_listenWithPortKeepsBoth(self) -> None:
        """
        --port and --listen together listen on both.
        """
        settings = parse("--port", "9001", "--listen", "tcp:0").settings
        self.assertEqual((settings.port, settings.listen), (9001, ("tcp:0",)))

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
        settings = parse(
            "--port", "0", "--listen", "tcp:0", "--interface", "127.0.0.1", "--backlog", "7"
        ).settings
        self.assertEqual((settings.interface, settings.backlog), ("127.0.0.1", 7))

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
        An endpoint type Twisted does not know is rejected, naming it and
        the types there are.
        """
        self.assertRejected(
            ["--listen", "bogus:9000"],
            "--listen 'bogus:9000' is not usable: unknown endpoint type 'bogus' "
            "(known: tcp, tcp6, unix, ssl, systemd, tls, haproxy, stdio).",
        )

    def test_systemdWithoutInheritedSocket(self) -> None:
        """
        A systemd endpoint with nothing inherited is a usage error, not an
        IndexError traceback.
        """
        self.assertRejected(
            ["--listen", "systemd:domain=INET:index=0"], "not usable", "socket-activated"
        )

    def test_badListenDescriptionsAreOneSentenceInTheUsersTerms(self) -> None:
        """
        Every bad form of every server endpoint type tcpecho documents is
        refused with one line naming the option, the description as typed
        and what is wrong with it, in the description's own terms.
        """
        for description, problem in BAD_SERVER_DESCRIPTIONS:
            for option in ("--listen", "--metrics"):
                self.assertRejected(
                    [option, description], f"{option} '{description}' is not usable: {problem}"
                )

    def test_typeInAnyCase(self) -> None:
        """
        The endpoint type may be written in any case, as Twisted's client
        descriptions already allow (its server parsers know only lower case).
        """
        reactor = MemoryReactorClock()
        options = parse(
            "--listen",
            "TCP:9200",
            "--listen",
            "Tcp6:9201:interface=\\:\\:1",
            "--listen",
            "HAProxy:UNIX:/tmp/x.sock",
        )
        makeService(options, reactor).startService()
        ports = [(port, interface) for port, _, _, interface in reactor.tcpServers]
        self.assertEqual(ports, [(9200, ""), (9201, "::1")])
        [(address, _, _, _, _)] = reactor.unixServers
        self.assertEqual(address, "/tmp/x.sock")

    def test_valuesGoToTwistedAsTheyWouldWithoutNames(self) -> None:
        """
        Values given without a name reach the parameters Twisted's parser
        gives them (tcp: port, interface, backlog; tcp6: port, backlog,
        interface), and names may come in any order.
        """
        reactor = MemoryReactorClock()
        options = parse(
            "--listen",
            "tcp:9200:127.0.0.1:7",
            "--listen",
            "tcp6:9201:8:\\:\\:1",
            "--listen",
            "tcp:interface=127.0.0.2:9202",
            "--listen",
            "tcp:backlog=9:port=9203",
        )
        makeService(options, reactor).startService()
        self.assertEqual(
            [(port, backlog, interface) for port, _, backlog, interface in reactor.tcpServers],
            [(9200, 7, "127.0.0.1"), (9201, 8, "::1"), (9202, 50, "127.0.0.2"), (9203, 9, "")],
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
                "tests.protocols.test_connection.Upper",
                "--factory",
                "tcplife.LifecycleServerFactory",
            ],
            "not both",
        )


class EventsOptionTests(SynchronousTestCase):
    """
    --events and --events-only are checked before anything runs.
    """

    assertRejected = OptionTests.assertRejected

    def test_eventsOnlyNeedsEvents(self) -> None:
        """
        --events-only without --events says to give it.
        """
        self.assertRejected(["--events-only", "close"], "--events-only", "--events PATH")

    def test_eventsOnlyTakesKnownPhases(self) -> None:
        """
        An unknown phase is refused, naming it and the phases there are.
        """
        path = str(temporaryDirectory(self) / "events.jsonl")
        self.assertRejected(
            ["--events", path, "--events-only", "close,closed"], "'close,closed'", "half-close"
        )

    def test_eventsOnlyBecomesASetOfPhases(self) -> None:
        """
        A comma list, spaces allowed, is the set of its phases.
        """
        path = str(temporaryDirectory(self) / "events.jsonl")
        options = parse("--events", path, "--events-only", "accept, close")
        self.assertEqual(options["events-only"], frozenset({"accept", "close"}))

    def test_anUnwritableEventsPathIsRefused(self) -> None:
        """
        A path in a directory that does not exist is refused with the
        system's reason.
        """
        path = str(temporaryDirectory(self) / "missing" / "events.jsonl")
        self.assertRejected(["--events", path], "--events", "cannot be written", "No such file")


class EventsServiceTests(SynchronousTestCase):
    """
    With --events, per-connection events go to the file only.
    """

    def test_eventsGoToTheFileNotTheLog(self) -> None:
        """
        The factory's events have the file as their sink, with the phases
        of --events-only; its close is the service's last act.
        """
        path = temporaryDirectory(self) / "events.jsonl"
        reactor = MemoryReactorClock()
        options = parse("--port", "0", "--events", str(path), "--events-only", "close")
        service = makeService(options, reactor)
        service.startService()
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.events.sink)
        self.assertEqual(factory.events.phases, frozenset({"close"}))
        service.stopService()
        factory.events.sink.event(LogLevel.info, {"lifecycle": "close"})
        self.assertEqual(factory.events.sink.dropped, 1)


def camelCase(option: str) -> str:
    """
    C{max-connections} as C{maxConnections}.
    """
    first, *rest = option.split("-")
    return first + "".join(word.capitalize() for word in rest)


class Patient(LifecycleServerFactory):
    """
    A factory subclass with defaults of its own, for --factory.
    """

    idleTimeout = 30.0
    closeTimeout = 2.0


class SettingsTests(SynchronousTestCase):
    """
    The options build the server's settings once, each option setting the
    field of its name.
    """

    def test_eachOptionSetsTheFieldOfItsName(self) -> None:
        """
        Every tcpecho option sets the ServerSettings field named as the
        option is (--max-connections: maxConnections), and every field but
        leversOff (the environment's) has its option.
        """
        events = str(temporaryDirectory(self) / "events.jsonl")
        given = {
            "--port": ("1234", 1234),
            "--interface": ("127.0.0.1", "127.0.0.1"),
            "--backlog": ("7", 7),
            "--listen": ("tcp:0", ("tcp:0",)),
            "--reuse-port": (None, True),
            "--trace": (None, True),
            "--factory": ("tests.tap.test_echo_tap.Patient", Patient),
            "--max-connections": ("3", 3),
            "--idle-timeout": ("4", 4.0),
            "--close-timeout": ("5.5", 5.5),
            "--shutdown-timeout": ("0", 0.0),
            "--metrics": ("tcp:0", "tcp:0"),
            "--fault": ("drop-input", (parseFaultSpec("drop-input"),)),
            "--seed": ("9", 9),
            "--reflect": (None, True),
            "--name": ("web-1", "web-1"),
            "--events": (events, events),
            "--events-only": ("close,accept", frozenset({"close", "accept"})),
        }
        # --workers and --reuse-port exclude each other.
        givenApart = {
            "--workers": ("3", 3),
            "--worker-restart-limit": ("7", 7),
            "--worker-restart-window": ("2.5", 2.5),
        }
        expected = {}
        for options in (given, givenApart):
            argv = [word for option, (text, _) in options.items() for word in (option, text)]
            settings = parse(*[word for word in argv if word]).settings
            fields = {camelCase(option[2:]): value for option, (_, value) in options.items()}
            self.assertEqual({name: getattr(settings, name) for name in fields}, fields)
            expected.update(fields)
        given.update(givenApart)
        self.assertEqual(
            parse("--protocol", "tests.protocols.test_connection.Upper").settings.protocol, Upper
        )
        everyOption = {f"--{name}" for name in Options().synonyms.values()}
        # --worker-of says which process this is, not how to serve.
        self.assertEqual(
            everyOption - set(given), {"--protocol", "--help", "--version", "--worker-of"}
        )
        self.assertEqual(
            set(attrs.fields_dict(ServerSettings)) - set(expected), {"protocol", "leversOff"}
        )

    def test_factoryClassAttributesStandUnlessAnOptionSaysOtherwise(self) -> None:
        """
        With --factory, the class's own defaults are the settings' where no
        option is given, and an option given wins over them.
        """
        patient = parse("--factory", "tests.tap.test_echo_tap.Patient").settings
        self.assertEqual((patient.idleTimeout, patient.closeTimeout), (30, 2))
        told = parse("--factory", "tests.tap.test_echo_tap.Patient", "--idle-timeout", "5")
        self.assertEqual((told.settings.idleTimeout, told.settings.closeTimeout), (5, 2))
        factory = makeService(told, MemoryReactorClock()).server.factory  # type: ignore[attr-defined]
        self.assertIsInstance(factory, Patient)
        self.assertEqual((factory.idleTimeout, factory.closeTimeout), (5, 2))

    def test_leversOffComeFromTheEnvironment(self) -> None:
        """
        TCPLIFE_LEVERS_OFF names the speed levers to switch off, separated by
        commas; the server's transport and event log then work Twisted's way
        in those respects, and in no other.
        """
        options = Options()
        options.environ = {"TCPLIFE_LEVERS_OFF": " write-at-once,rendered-events ,"}
        options.parseOptions([])
        self.assertEqual(options.settings.leversOff, {"write-at-once", "rendered-events"})
        server = makeService(options, MemoryReactorClock()).server  # type: ignore[attr-defined]
        self.assertFalse(server.factory.events.rendered)
        self.assertEqual(parse().settings.leversOff, frozenset())

    def test_unknownLeverIsAUsageError(self) -> None:
        """
        A lever that does not exist is refused in one sentence naming it and
        the levers there are.
        """
        options = Options()
        options.environ = {"TCPLIFE_LEVERS_OFF": "nodelay,turbo"}
        error = self.assertRaises(usage.UsageError, options.parseOptions, [])
        self.assertEqual(
            str(error),
            "TCPLIFE_LEVERS_OFF names 'turbo', which is not a speed lever; the levers are "
            "write-at-once, 256k-reads, nodelay, batched-poller, close-at-once, "
            "accept-without-enums, rendered-events, kernel-view (separated by commas).",
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
        options = parse("--port", "0", "--protocol", "tests.protocols.test_connection.Upper")
        makeService(options, reactor).startService()
        factory = reactor.tcpServers[0][1]
        self.assertIs(factory.protocol, Upper)

    def test_listenEventCarriesAddressAndBacklog(self) -> None:
        """
        Listening emits C{listen} with the address and the backlog.
        """
        reactor = MemoryReactorClock()
        recorded = EventRecorder()
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
        A port that cannot be bound ends the process (SystemExit, as twist
        runs it) with one line naming the address and the reason.
        """
        error = OSError(98, "Address already in use")
        reactor = RaisingMemoryReactor(listenException=CannotListenError("", 9000, error))
        service = makeService(parse(), reactor)  # type: ignore[arg-type]
        failure = self.assertRaises(SystemExit, service.startService)
        message = str(failure)
        self.assertEqual(message.count("\n"), 0)
        self.assertTrue(message.startswith("tcplife: cannot listen on 0.0.0.0:9000: "))
        self.assertIn("Address already in use", message)

    def test_listenerRaisesListenErrorNotSystemExit(self) -> None:
        """
        The library's listener reports a port that cannot be bound as a
        ListenError and leaves ending the process to its caller.
        """
        error = OSError(98, "Address already in use")
        reactor = RaisingMemoryReactor(listenException=CannotListenError("", 9000, error))
        service = makeService(parse(), reactor)  # type: ignore[arg-type]
        server = service.server  # type: ignore[attr-defined]
        failure = self.assertRaises(ListenError, server.startService)
        self.assertNotIsInstance(failure, SystemExit)
        self.assertIn("0.0.0.0:9000", str(failure))


class TLSFileTests(SynchronousTestCase):
    """
    The usual mistakes with the files of C{--listen ssl:} and C{tls:} are
    one line that names the file and the problem, not OpenSSL's traceback.
    """

    def setUp(self) -> None:
        self.files = TLSMistakes(temporaryDirectory(self))

    def test_eachMistakeNamesTheFileAndTheProblem(self) -> None:
        """
        A key without its certificate, a certificate of another key, the
        two swapped, a missing file, an encrypted key, a chain or DH file
        that holds something else, and a tls: folder with nothing to serve,
        are each refused with the sentence that says so.
        """
        key, cert = self.files.good.key, self.files.good.cert
        otherCert, encrypted = self.files.other.cert, self.files.encryptedKey
        missing = key.parent / "missing.pem"
        for description, problem in [
            (
                f"ssl:0:privateKey={key}",
                f"privateKey file '{key}' holds no certificate, and no certKey= names one; "
                "add certKey=CERT.pem.",
            ),
            (
                f"ssl:0:privateKey={key}:certKey={otherCert}",
                f"the certificate in '{otherCert}' does not match the private key in '{key}' "
                "(it was made for another key).",
            ),
            (
                f"ssl:0:privateKey={cert}:certKey={key}",
                f"privateKey file '{cert}' holds no private key (it holds: CERTIFICATE).",
            ),
            (
                f"ssl:0:privateKey={missing}:certKey={cert}",
                f"privateKey file '{missing}' cannot be read: No such file or directory.",
            ),
            ("ssl:0", "privateKey file 'server.pem' cannot be read: No such file or directory."),
            (
                f"ssl:0:privateKey={encrypted}:certKey={cert}",
                f"privateKey file '{encrypted}' holds an encrypted private key; decrypt it first",
            ),
            (
                f"ssl:0:privateKey={key}:certKey={cert}:extraCertChain={key}",
                f"extraCertChain file '{key}' holds no certificate (it holds: PRIVATE KEY).",
            ),
            (
                f"ssl:0:privateKey={key}:certKey={cert}:dhParameters={key}",
                f"dhParameters file '{key}' holds no DH parameters (it holds: PRIVATE KEY); "
                "make them with: openssl dhparam -out dh.pem 2048.",
            ),
            (
                f"tls:{self.files.trustRoots}:port=0",
                f"path folder '{self.files.trustRoots}' holds no private key together with its "
                "certificate for a DNS name (subjectAltName), so it can serve no name.",
            ),
            (
                f"haproxy:ssl:0:privateKey={key}",
                f"privateKey file '{key}' holds no certificate",
            ),
        ]:
            assertRejected(
                self,
                parse,
                ["--listen", description],
                f"--listen '{description}' is not usable: {problem}",
            )

    def test_aKeyAndItsCertificateServe(self) -> None:
        """
        The key with its certificate (in two files or in one), and a tls:
        folder of them, are accepted.
        """
        key, cert = self.files.good.key, self.files.good.cert
        both = self.files.serving / "localhost.pem"
        descriptions = [
            f"ssl:0:privateKey={key}:certKey={cert}",
            f"ssl:0:privateKey={both}",
            f"tls:{self.files.serving}:port=0",
        ]
        options = parse(*(arg for d in descriptions for arg in ("--listen", d)))
        self.assertEqual(options["listen"], descriptions)


class LibraryTests(SynchronousTestCase):
    """
    C{tcplife.serverFromString} checks descriptions as tcpecho does.
    """

    def test_badDescriptionRaisesEndpointErrorWithTheSentence(self) -> None:
        """
        A bad description raises tcplife.EndpointError, a ValueError, whose
        message is the sentence tcpecho prints after "is not usable: ".
        """
        error = self.assertRaises(
            tcplife.EndpointError,
            tcplife.serverFromString,
            MemoryReactorClock(),
            "TCP:9000:backlog=-5",
        )
        self.assertIsInstance(error, ValueError)
        self.assertEqual(str(error), "backlog must be a whole number from 1 to 65535, not '-5'")


class MisbehaviourOptionTests(SynchronousTestCase):
    """
    --fault, --seed, --reflect and --name: one sentence for each mistake, and
    the factory they build.
    """

    def factory(self, *argv: str) -> LifecycleServerFactory:
        reactor = MemoryReactorClock()
        makeService(parse("--port", "0", *argv), reactor).startService()
        factory: LifecycleServerFactory = reactor.tcpServers[0][1]
        return factory

    def test_badSpecsAreOneSentenceNamingTheSpec(self) -> None:
        """
        A --fault spec that cannot be used is refused with one line naming
        it and what is wrong.
        """
        assertRejected(
            self,
            parse,
            ["--fault", "delay=50", "--fault", "dealy=5"],
            "--fault 'dealy=5' is not usable: 'dealy' is no fault; the faults are",
        )
        assertRejected(
            self, parse, ["--fault", "reset-after=x"], "reset-after must be a whole number"
        )

    def test_seedNeedsFaultsAndIsAWholeNumber(self) -> None:
        """
        --seed without --fault, or not a whole number, is refused.
        """
        assertRejected(self, parse, ["--seed", "1"], "--seed applies to --fault")
        assertRejected(
            self, parse, ["--fault", "drop-input", "--seed", "x"], "--seed must be a whole number"
        )

    def test_nameNeedsReflect(self) -> None:
        """
        --name without --reflect, or empty, is refused.
        """
        assertRejected(self, parse, ["--name", "web-1"], "--name applies to --reflect")
        assertRejected(self, parse, ["--reflect", "--name", " "], "--name must name the server")

    def test_faultsAndSeedMakeTheFactorysPlan(self) -> None:
        """
        Every --fault spec, in order, and --seed make the factory's plan.
        """
        factory = self.factory("--fault", "delay=5,p=0.5", "--fault", "never-accept", "--seed", "9")
        assert factory.faults is not None
        self.assertEqual(
            (factory.faults.describe(), factory.faults.seed), ("delay=5,p=0.5; never-accept", 9)
        )
        self.assertIs(factory.gate.faults, factory.faults)

    def test_withoutSeedTheSeedIsLogged(self) -> None:
        """
        Without --seed the seed is random, and logged so that it can be given
        to draw the same again.
        """
        from twisted.logger import globalLogPublisher

        logged: list[dict[str, object]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        first = self.factory("--fault", "drop-input").faults
        second = self.factory("--fault", "drop-input").faults
        assert first is not None and second is not None
        self.assertNotEqual(first.seed, second.seed)
        self.assertEqual([e["seed"] for e in logged if "faults" in e], [first.seed, second.seed])

    def test_reflectNamesTheServer(self) -> None:
        """
        --reflect serves the line under --name, or HOSTNAME:PID by default;
        without it there is no line.
        """
        import os
        import socket

        self.assertEqual(self.factory("--reflect", "--name", "web-1").reflectAs, "web-1")
        self.assertEqual(
            self.factory("--reflect").reflectAs, f"{socket.gethostname()}:{os.getpid()}"
        )
        self.assertIsNone(self.factory().reflectAs)
        self.assertIsNone(self.factory().faults)
