"""
C{twist tcpclient}'s options and the service they build.
"""

from __future__ import annotations

import os
import resource
import sys
from io import BytesIO, StringIO
from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tcplife.client import WORKER_VARIABLE, Thresholds, WorkerPool, WorkerService
from tcplife.client._loadservice import LoadService
from tcplife.client._oneshot import OneShot
from tcplife.tap._loadoptions import cpus
from tcplife.tap._worker import LAUNCH
from tcplife.tap.client import (
    _FILE_CHUNK,
    LONGEST_FILE,
    Options,
    _workerCommand,
    makeEndpoint,
    makeService,
)

from ..certs import TLSMistakes
from ..helpers import assertRejected
from ..servers import temporaryDirectory


def parse(*argv: str, stdin: bytes | None = None) -> Options:
    options = Options()
    if stdin is not None:
        options.stdin = BytesIO(stdin)
    options.parseOptions(list(argv))
    return options


class Zeros:
    """
    A stream of C{size} zero bytes that counts how many were read.
    """

    def __init__(self, size: int) -> None:
        self.left = size
        self.read_ = 0

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        self.read_ += n
        return bytes(n)


#: Client descriptions Twisted's parsers refuse in Python's words or take
#: without a word until the connection fails, and the sentence tcpclient
#: says instead.
BAD_CLIENT_DESCRIPTIONS = [
    ("", "it names no endpoint type (for example tcp:HOST:9000)."),
    ("9000", "it names no endpoint type; for TCP port 9000 write tcp:HOST:9000."),
    ("bogus:1", "unknown endpoint type 'bogus' (known: tcp, ssl, unix, tls)."),
    ("tcp", "tcp needs host and port (for example tcp:127.0.0.1:9000)."),
    ("tcp:localhost", "tcp needs port (for example tcp:127.0.0.1:9000)."),
    ("tcp:host=localhost", "tcp needs port"),
    ("tcp:port=9000", "tcp needs host"),
    ("tcp:localhost:http", "port must be a whole number from 1 to 65535, not 'http'."),
    ("tcp:localhost:0", "port must be a whole number from 1 to 65535, not '0'."),
    ("tcp:localhost:70000", "port must be a whole number from 1 to 65535, not '70000'."),
    (
        "tcp:localhost:9000:port=9001",
        "too many values without a name: tcp takes host without one; give the rest as name=value.",
    ),
    # An IPv6 address whose colons are not escaped.
    ("tcp:::1:9000", "too many values without a name: tcp takes host and port (in that order)"),
    (
        "tcp:localhost:9000:timeout=2.5",
        "timeout must be a whole number of seconds from 1 to 1000000, not '2.5'.",
    ),
    (
        "tcp:localhost:9000:bindaddress=127.0.0.1",
        "unknown parameter 'bindaddress' (tcp takes host, port, timeout, bindAddress).",
    ),
    ("tcp:localhost:9000\\", "it ends in a '\\' that escapes nothing."),
    ("unix", "unix needs path (for example unix:/run/echo.sock)."),
    ("unix:", "path must name a socket path, not ''"),
    ("unix:/run/echo.sock:lockfile=2", "lockfile must be 0 or 1, not '2'."),
    (
        "unix:/run/echo.sock:mode=600",
        "unknown parameter 'mode' (unix takes path, timeout, lockfile).",
    ),
    (
        "ssl:localhost",
        "ssl needs port (for example ssl:example.com:443:caCertsDir=/etc/ssl/certs).",
    ),
    ("ssl:localhost:443:hostname=a..b", "hostname 'a..b' is not a host name"),
    (
        "ssl:localhost:443:privateKey=key.pem",
        "privateKey= needs certKey= too: the client certificate that goes with the key.",
    ),
    ("tls:localhost", "tls needs port (for example tls:example.com:443)."),
    (
        "tls:localhost:443:timeout=soon",
        "timeout must be a whole number of seconds from 1 to 1000000, not 'soon'.",
    ),
    ("tls:\\:\\:1:443", "host must be a host name or an IPv4 address, not '::1'."),
    ("tls:bad..name:443", "host 'bad..name' is not a host name"),
    (
        "tls:localhost:443:endpoint=tcp",
        "endpoint 'tcp' is not usable: tcp needs host and port (for example tcp:127.0.0.1:9000).",
    ),
    (
        "tls:localhost:443:certificate=cert.pem:privatekey=key.pem",
        "unknown parameter 'privatekey' (tls takes host, port, timeout, bindAddress, "
        "certificate, privateKey, trustRoots, endpoint).",
    ),
]


class OneShotOptionTests(SynchronousTestCase):
    """
    One-shot options: where to connect and what to send.
    """

    def test_defaults(self) -> None:
        """
        Without a target the client connects to 127.0.0.1:9000 with a 10 s
        timeout; each --message is one line.
        """
        options = parse("--message", "hello", "-m", "wörld")
        self.assertEqual((options["host"], options["port"]), ("127.0.0.1", 9000))
        self.assertEqual(options["timeout"], 10.0)
        self.assertFalse(options["load"])
        self.assertEqual(options["request"], "hello\nwörld\n".encode())

    def test_fileIsSentAsIs(self) -> None:
        """
        --file sends the file's bytes, unchanged.
        """
        path = temporaryDirectory(self) / "payload"
        path.write_bytes(b"\x00\x01no newline")
        self.assertEqual(parse("--file", str(path))["request"], b"\x00\x01no newline")

    def test_dashReadsStandardInput(self) -> None:
        """
        --file - reads standard input to its end.
        """
        self.assertEqual(parse("--file", "-", stdin=b"piped\n")["request"], b"piped\n")

    def test_fileUpToTheBoundIsSent(self) -> None:
        """
        A file of exactly LONGEST_FILE bytes (64 MiB) is sent whole.
        """
        path = temporaryDirectory(self) / "largest"
        with open(path, "wb") as f:
            f.truncate(LONGEST_FILE)
        self.assertEqual(len(parse("--file", str(path))["request"]), LONGEST_FILE)

    def test_fileBeyondTheBoundIsRefusedAfterReadingNoMore(self) -> None:
        """
        A larger file or standard input is refused in one line that names it,
        the bound and load mode, once a chunk past the bound has been read
        (so an endless one, /dev/zero, cannot fill the memory).
        """
        stdin = Zeros(4 * LONGEST_FILE)
        options = Options()
        options.stdin = stdin  # type: ignore[assignment]
        assertRejected(
            self,
            lambda *argv: options.parseOptions(list(argv)),
            ["--file", "-"],
            "--file '-'",
            "more than 64 MiB",
            "load mode (--connections N --size BYTES)",
        )
        self.assertLessEqual(stdin.read_, LONGEST_FILE + _FILE_CHUNK)

    def test_connectTakesAnyEndpoint(self) -> None:
        """
        --connect takes a Twisted client endpoint string.
        """
        options = parse("--connect", "unix:/tmp/echo.sock", "-m", "x")
        self.assertEqual(options["connect"], "unix:/tmp/echo.sock")

    def test_protocolLoadsAnEchoClientSubclass(self) -> None:
        """
        --protocol names an EchoClient subclass by its dotted name.
        """
        options = parse("--protocol", "tcplife.EchoClient", "-m", "x")
        self.assertEqual(options["protocol"].__name__, "EchoClient")

    def assertRejected(self, argv: list[str], *fragments: str) -> None:
        assertRejected(self, parse, argv, *fragments)

    def test_badValuesAreOneSentence(self) -> None:
        """
        Each bad value is rejected with one sentence naming the option and
        the value.
        """
        self.assertRejected(["--port", "0", "-m", "x"], "--port", "1 to 65535", "'0'")
        self.assertRejected(["--port", "http", "-m", "x"], "--port", "'http'")
        self.assertRejected(["--host", " ", "-m", "x"], "--host")
        self.assertRejected(
            ["--host", "localhost:9000", "-m", "x"], "--host", "'localhost:9000'", "--port"
        )
        self.assertRejected(["--timeout", "-1", "-m", "x"], "--timeout", "'-1'")
        self.assertRejected(["--timeout", "soon", "-m", "x"], "--timeout", "'soon'")
        self.assertRejected(["--connect", "tcp:h:1", "--port", "2", "-m", "x"], "not both")
        self.assertRejected(["-m", "x", "--file", "f"], "--message or --file")
        self.assertRejected([], "--message", "--file", "--connections")
        self.assertRejected(["--file", "/nonexistent/x"], "'/nonexistent/x'", "No such file")
        self.assertRejected(["--protocol", "no.such.Thing", "-m", "x"], "--protocol")
        self.assertRejected(
            ["--protocol", "tests.servers.Corrupting", "-m", "x"], "not a subclass", "EchoClient"
        )

    def test_badConnectDescriptionsAreOneSentenceInTheUsersTerms(self) -> None:
        """
        Every bad form of every client endpoint type is refused with one
        line naming --connect, the description as typed and what is wrong
        with it, in the description's own terms.
        """
        for description, problem in BAD_CLIENT_DESCRIPTIONS:
            self.assertRejected(
                ["--connect", description, "-m", "x"],
                f"--connect '{description}' is not usable: {problem}",
            )

    def test_connectDescriptionsAsTwistedTakesThem(self) -> None:
        """
        Host and port come by position or by name, the type in any case, an
        IPv6 address with its colons escaped; each reaches connectTCP as
        given.
        """
        reactor = MemoryReactorClock()
        for description, host, port in [
            ("TCP:127.0.0.1:9000", "127.0.0.1", 9000),
            ("tcp:host=localhost:9001", "localhost", 9001),
            ("tcp:localhost:port=9002", "localhost", 9002),
            ("tcp:\\:\\:1:9003:timeout=5", "::1", 9003),
        ]:
            endpoint, _ = makeEndpoint(parse("--connect", description, "-m", "x"), reactor)
            endpoint.connect(Factory.forProtocol(Protocol))
            self.assertEqual(reactor.tcpClients[-1][:2], (host, port))

    def test_loadOptionsNeedLoadMode(self) -> None:
        """
        Load-mode options without load mode are refused, naming how to get
        load mode.
        """
        for option, value in [
            ("--size", "10"),
            ("--rate", "5"),
            ("--json", "-"),
            ("--json-stream", "-"),
            ("--interval", "2"),
            ("--max-p99", "10"),
            ("--max-errors", "0"),
            ("--min-rate", "100"),
            ("--workers", "2"),
        ]:
            self.assertRejected([option, value, "-m", "x"], option, "--connections")

    def test_oneShotConnectsToOneTarget(self) -> None:
        """
        Several --connect are for load mode; one-shot mode refuses them.
        """
        self.assertRejected(
            ["--connect", "tcp:a:1", "--connect", "tcp:b:2", "-m", "x"],
            "One-shot mode connects to one --connect",
            "load mode",
        )


class LoadOptionTests(SynchronousTestCase):
    """
    Load-mode options and their defaults.
    """

    def test_anyOfConnectionsDurationCountMeansLoad(self) -> None:
        """
        --connections, --duration or --count selects load mode; the rest
        default to 1 connection, 10 s, 64-byte rr messages.
        """
        for argv in (["-c", "1"], ["-d", "10"]):
            options = parse(*argv)
            self.assertTrue(options["load"])
            self.assertEqual(
                (
                    options["connections"],
                    options["duration"],
                    options["count"],
                    options["size"],
                    options["pattern"],
                ),
                (1, 10.0, None, 64, "rr"),
            )
        self.assertEqual(parse("--count", "5")["count"], 5)
        self.assertIsNone(parse("--count", "5")["duration"])

    def test_streamWindowDefaultsToSixtyFourKibibytes(self) -> None:
        """
        The stream window defaults to 64 KiB, or one message if larger.
        """
        self.assertEqual(parse("-c", "1", "--pattern", "stream")["window"], 65536)
        self.assertEqual(parse("-c", "1", "--pattern", "stream", "-s", "100000")["window"], 100000)

    def assertRejected(self, argv: list[str], *fragments: str) -> None:
        assertRejected(self, parse, argv, *fragments)

    def test_badLoadValues(self) -> None:
        """
        Each bad load value is one sentence naming the option.
        """
        self.assertRejected(["-c", "0"], "--connections", "'0'")
        self.assertRejected(["-c", "2", "-d", "1", "-n", "5"], "--duration or --count")
        self.assertRejected(["-d", "0"], "--duration", "'0'")
        self.assertRejected(["-n", "many"], "--count", "'many'")
        self.assertRejected(["-c", "1", "-s", "0"], "--size", "'0'")
        self.assertRejected(["-c", "1", "-r", "-3"], "--rate", "'-3'")
        self.assertRejected(["-c", "1", "--pattern", "pingpong"], "rr, stream or connect")
        self.assertRejected(["-c", "1", "--window", "100"], "--pattern stream")
        self.assertRejected(
            ["-c", "1", "--pattern", "stream", "-s", "100", "-w", "99"], "--window", "'99'"
        )
        self.assertRejected(
            ["-c", "1", "--pattern", "stream", "-s", "1", "-w", "1000000"], "--window", "--size"
        )
        self.assertRejected(["-c", "1", "-m", "x"], "--message", "one-shot")
        self.assertRejected(["-c", "1", "--json", "/nonexistent/r.json"], "--json")

    def test_newLoadOptionsAndTheirDefaults(self) -> None:
        """
        --interval defaults to a second; thresholds to none; --json-stream to
        nothing; each is read as given.
        """
        options = parse("-c", "1")
        self.assertEqual(options["interval"], 1.0)
        self.assertEqual(options["thresholds"], Thresholds())
        self.assertIsNone(options["json-stream"])
        options = parse(
            "-c", "1", "--interval", "0.25", "--max-p99", "2.5", "--max-errors", "3",
            "--min-rate", "1e4", "--json-stream", "-",
        )  # fmt: skip
        self.assertEqual(options["interval"], 0.25)
        self.assertEqual(options["thresholds"], Thresholds(maxP99=2.5, maxErrors=3, minRate=1e4))
        self.assertEqual(options["json-stream"], "-")

    def test_badNewLoadValues(self) -> None:
        """
        Each bad value of the interval, stream and threshold options is one
        sentence naming the option and the value.
        """
        self.assertRejected(["-c", "1", "--interval", "0"], "--interval", "'0'")
        self.assertRejected(["-c", "1", "--interval", "0.001"], "--interval", "0.01", "'0.001'")
        self.assertRejected(["-c", "1", "--max-p99", "fast"], "--max-p99", "milliseconds")
        self.assertRejected(["-c", "1", "--max-errors", "-1"], "--max-errors", "'-1'")
        self.assertRejected(["-c", "1", "--max-errors", "few"], "--max-errors", "'few'")
        self.assertRejected(["-c", "1", "--min-rate", "0"], "--min-rate", "'0'")
        self.assertRejected(["-c", "1", "--min-rate", "inf"], "--min-rate", "'inf'")
        self.assertRejected(["-c", "1", "--json-stream", ""], "--json-stream needs a file name")
        self.assertRejected(
            ["-c", "1", "--json-stream", "/nonexistent/s.jsonl"], "--json-stream", "no such"
        )
        self.assertRejected(
            ["-c", "1", "--json", "-", "--json-stream", "-"], "--json and --json-stream", "'-'"
        )

    def test_connectIsRepeatableInLoadMode(self) -> None:
        """
        Several --connect in load mode: every one is kept, in order; the
        same one twice is refused.
        """
        options = parse("-c", "2", "--connect", "tcp:a:1", "--connect", "unix:/tmp/b.sock")
        self.assertEqual(options["connects"], ["tcp:a:1", "unix:/tmp/b.sock"])
        self.assertRejected(
            ["-c", "2", "--connect", "tcp:a:1", "--connect", "tcp:a:1"],
            "--connect 'tcp:a:1' is given twice",
        )

    def test_bindNeedsAnAddressOfThisHost(self) -> None:
        """
        --bind takes an IP address of this host, of the targets' family, and
        no UNIX target.
        """
        self.assertEqual(parse("-c", "1", "--bind", "127.0.0.2")["bind"], "127.0.0.2")
        self.assertEqual(parse("-c", "1", "--host", "::1", "--bind", "[::1]")["bind"], "::1")
        self.assertRejected(
            ["-c", "1", "--bind", "localhost"], "--bind", "IPv4 or IPv6", "'localhost'"
        )
        # 192.0.2.0/24 is for documentation: no host has it.
        self.assertRejected(
            ["-c", "1", "--bind", "192.0.2.7"], "--bind 192.0.2.7 is not an address of this host"
        )
        self.assertRejected(
            ["-c", "1", "--connect", "unix:/tmp/e.sock", "--bind", "127.0.0.1"],
            "--bind applies to TCP", "'unix:/tmp/e.sock'",
        )  # fmt: skip
        self.assertRejected(
            ["-c", "1", "--host", "::1", "--bind", "127.0.0.1"], "--bind 127.0.0.1", "one family"
        )

    def test_workersAreAWholeNumberOrAuto(self) -> None:
        """
        --workers N, or auto (one per CPU, no more than connections or
        messages); each bad value is one sentence naming the option.
        """
        self.assertEqual(parse("-c", "4")["workers"], 1)
        self.assertEqual(parse("-c", "4", "--workers", "2")["workers"], 2)
        self.assertEqual(parse("-c", "1", "--workers", "auto")["workers"], 1)
        self.assertEqual(parse("-c", "1000", "--workers", "auto")["workers"], cpus())
        self.assertEqual(parse("-c", "1000", "-n", "1", "--workers", "auto")["workers"], 1)
        self.assertRejected(["-c", "4", "--workers", "0"], "--workers", "or auto", "'0'")
        self.assertRejected(["-c", "4", "--workers", "many"], "--workers", "'many'")
        self.assertRejected(
            ["-c", "2", "--workers", "3"], "--workers 3 needs at least 3 --connections"
        )
        self.assertRejected(["-c", "4", "-n", "2", "--workers", "3"], "--workers 3 needs --count")

    def test_connectionsBeyondTheOpenFileLimitAreRefused(self) -> None:
        """
        More connections than the process may open files is refused up
        front, with what to do about it.
        """
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertRejected(["-c", str(soft)], "--connections", "ulimit -n")


class ServiceTests(SynchronousTestCase):
    """
    makeService builds the exchange or the run the options describe.
    """

    def build(self, *argv: str) -> Any:
        return makeService(parse(*argv), MemoryReactorClock(), stdout=BytesIO(), stderr=StringIO())

    def test_oneShotService(self) -> None:
        """
        One-shot options build a OneShot whose factory sends the request.
        """
        service = self.build("--host", "::1", "--port", "7", "-m", "x", "-t", "2")
        self.assertIsInstance(service, OneShot)
        self.assertEqual(service.target, "[::1]:7")
        self.assertEqual((service.factory.request, service.factory.timeout), (b"x\n", 2.0))

    def test_loadService(self) -> None:
        """
        Load options build a LoadService with the settings given.
        """
        service = self.build("-c", "3", "-n", "7", "--pattern", "connect", "-s", "9")
        self.assertIsInstance(service, LoadService)
        settings = service.run.settings
        self.assertEqual(
            (settings.connections, settings.count, settings.pattern, settings.size),
            (3, 7, "connect", 9),
        )

    def test_reflectInBothModes(self) -> None:
        """
        --reflect makes the one-shot factory and the load run expect the
        server's line; without it neither does.
        """
        self.assertTrue(self.build("-m", "x", "--reflect").factory.reflect)
        self.assertTrue(self.build("-c", "2", "--reflect").run.settings.reflect)
        self.assertFalse(self.build("-m", "x").factory.reflect)
        self.assertFalse(self.build("-c", "2").run.settings.reflect)

    def test_loadServiceStreamsAndHoldsTheThresholds(self) -> None:
        """
        --json-stream, --interval and the thresholds reach the service and
        its run.
        """
        service = self.build("-c", "1", "--json-stream", "-", "--interval", "2", "--min-rate", "5")
        self.assertEqual((service.stream, service.run.interval), ("-", 2.0))
        self.assertEqual(service.thresholds, Thresholds(minRate=5.0))

    def test_workersShareTheRunInProcessesOfTheirOwn(self) -> None:
        """
        --workers 2: the service runs a pool of two workers, each started as
        twist tcpclient in a process group of its own, with the same
        options but --workers.
        """
        service = self.build("-c", "4", "-n", "100", "--workers", "2", "--json", "-")
        self.assertIsInstance(service.run, WorkerPool)
        self.assertEqual((service.run.count, service.run.settings.connections), (2, 4))
        options = parse("-c", "4", "-n", "100", "--workers", "2", "--json", "-")
        command = _workerCommand(options)(1)
        self.assertEqual(command[:3], [sys.executable, "-c", LAUNCH])
        self.assertEqual(
            command[command.index("tcpclient") :],
            ["tcpclient", "-c", "4", "-n", "100", "--json", "-"],
        )

    def test_aWorkerRunsItsShare(self) -> None:
        """
        Started as worker 2 of 2 (its environment says so), tcpclient runs
        its share of the connections and the count, and reports to its
        parent.
        """
        self.patch(os, "environ", {**os.environ, WORKER_VARIABLE: "1/2"})
        service = self.build("-c", "5", "-n", "101", "--workers", "2")
        self.assertIsInstance(service, WorkerService)
        settings = service.run.settings
        self.assertEqual((settings.connections, settings.count), (2, 50))

    def test_severalTargetsOneRun(self) -> None:
        """
        Several --connect: one run over all of them, named together in the
        report, each by its description.
        """
        service = self.build("-c", "4", "--connect", "tcp:127.0.0.1:1", "--connect", "unix:/x")
        self.assertEqual([t.name for t in service.run.targets], ["tcp:127.0.0.1:1", "unix:/x"])
        self.assertEqual(service.run.settings.target, "tcp:127.0.0.1:1, unix:/x")

    def test_bindAddressReachesConnectTCP(self) -> None:
        """
        --bind is the local address of every TCP connection, through
        --host/--port, tcp: and tls: endpoints alike; a description's own
        bindAddress= wins.
        """
        reactor = MemoryReactorClock()
        for argv, bound in [
            (["--port", "7"], ("127.0.0.2", 0)),
            (["--connect", "tcp:127.0.0.1:7"], ("127.0.0.2", 0)),
            (["--connect", "tcp:127.0.0.1:7:bindAddress=127.0.0.3"], ("127.0.0.3", 0)),
            (["--connect", "tls:127.0.0.1:7"], ("127.0.0.2", 0)),
        ]:
            endpoint, _ = makeEndpoint(parse(*argv, "--bind", "127.0.0.2", "-m", "x"), reactor)
            endpoint.connect(Factory.forProtocol(Protocol))
            self.assertEqual(reactor.tcpClients[-1][4], bound, argv)

    def test_endpointsByTarget(self) -> None:
        """
        An IPv4 or IPv6 address connects directly; a name is resolved by
        HostnameEndpoint (every address, IPv6 and IPv4).
        """
        reactor = MemoryReactorClock()
        cases = [
            ("127.0.0.1", TCP4ClientEndpoint, "127.0.0.1:9000"),
            ("::1", TCP6ClientEndpoint, "[::1]:9000"),
            ("localhost", HostnameEndpoint, "localhost:9000"),
        ]
        for host, kind, target in cases:
            endpoint, named = makeEndpoint(parse("--host", host, "-m", "x"), reactor)
            self.assertIsInstance(endpoint, kind)
            self.assertEqual(named, target)

    def test_jsonPathMustBeWritable(self) -> None:
        """
        --json accepts a new file in an existing directory, and refuses a
        directory.
        """
        directory = temporaryDirectory(self)
        self.assertEqual(
            parse("-c", "1", "--json", str(directory / "r.json"))["json"],
            str(directory / "r.json"),
        )
        self.assertRaises(UsageError, parse, "-c", "1", "--json", str(directory))
        self.assertFalse(os.path.exists(directory / "r.json"))

    def test_jsonPathThatCouldNotBeWrittenAfterTheRunIsRefusedBeforeIt(self) -> None:
        """
        An empty --json, or a name the file system cannot take, is refused
        when the options are read, not when the report is due.
        """
        directory = temporaryDirectory(self)
        assertRejected(
            self,
            parse,
            ["-c", "1", "--json", ""],
            "--json needs a file name ('-': standard output)",
        )
        tooLong = str(directory / ("r" * 300))
        assertRejected(
            self, parse, ["-c", "1", "--json", tooLong], f"--json {tooLong!r} cannot be written"
        )


class TLSFileTests(SynchronousTestCase):
    """
    The usual mistakes with the files of C{--connect ssl:} and C{tls:} are
    one line that names the file and the problem, not OpenSSL's traceback.
    """

    def setUp(self) -> None:
        self.files = TLSMistakes(temporaryDirectory(self))

    def test_eachMistakeNamesTheFileAndTheProblem(self) -> None:
        """
        A trust-roots folder holding a key, a file or nothing where a folder
        belongs, a folder without certificates, a client certificate without
        its key or with another's, a key file given as the certificate, and
        an encrypted key, are each refused with the sentence that says so.
        """
        key, cert = self.files.good.key, self.files.good.cert
        withKey, empty = self.files.trustRootsWithKey, key.parent / "empty"
        empty.mkdir()
        missing = key.parent / "missing"
        for description, problem in [
            (
                f"ssl:localhost:443:caCertsDir={withKey}",
                f"caCertsDir folder '{withKey}' holds 'key.pem', which is no certificate "
                "(it holds: PRIVATE KEY); keep only CA certificates there.",
            ),
            (
                f"tls:localhost:443:trustRoots={withKey}",
                f"trustRoots folder '{withKey}' holds 'key.pem', which is no certificate",
            ),
            (
                f"tls:localhost:443:trustRoots={cert}",
                f"trustRoots must name a folder of CA certificates (*.pem), and '{cert}' "
                "is a file.",
            ),
            (
                f"tls:localhost:443:trustRoots={missing}",
                f"trustRoots must name a folder of CA certificates (*.pem), and '{missing}' "
                "does not exist.",
            ),
            (
                f"tls:localhost:443:trustRoots={empty}",
                f"trustRoots folder '{empty}' holds no CA certificate "
                "(only files named *.pem count).",
            ),
            (
                f"tls:localhost:443:certificate={cert}",
                f"certificate file '{cert}' holds no private key, and no privateKey= names one; "
                "add privateKey=KEY.pem.",
            ),
            (
                f"tls:localhost:443:certificate={cert}:privateKey={self.files.other.key}",
                f"the certificate in '{cert}' does not match the private key in "
                f"'{self.files.other.key}' (it was made for another key).",
            ),
            (
                f"ssl:localhost:443:certKey={key}",
                f"certKey file '{key}' holds no certificate (it holds: PRIVATE KEY).",
            ),
            (
                f"tls:localhost:443:certificate={cert}:privateKey={self.files.encryptedKey}",
                f"privateKey file '{self.files.encryptedKey}' holds an encrypted private key",
            ),
        ]:
            assertRejected(
                self,
                parse,
                ["--connect", description, "-m", "x"],
                f"--connect '{description}' is not usable: {problem}",
            )

    def test_trustRootsAndAClientCertificateConnect(self) -> None:
        """
        A folder of CA certificates and a client certificate with its key
        (in two files or in one) are accepted.
        """
        key, cert = self.files.good.key, self.files.good.cert
        trust, both = self.files.trustRoots, self.files.serving / "localhost.pem"
        for description in [
            f"tls:localhost:443:trustRoots={trust}:certificate={cert}:privateKey={key}",
            f"ssl:localhost:443:caCertsDir={trust}:certKey={both}",
        ]:
            self.assertEqual(parse("--connect", description, "-m", "x")["connect"], description)
