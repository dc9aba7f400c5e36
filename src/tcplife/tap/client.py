"""
C{twist tcpclient}: an echo client and load generator, every lifecycle step
logged.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any, cast

from twisted.application.service import IService
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamClientEndpoint
from twisted.logger import LogLevel
from twisted.python import usage

from ..client import (
    DEFAULT_DURATION,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_SIZE,
    DEFAULT_TIMEOUT,
    DEFAULT_WINDOW,
    PATTERNS,
    STREAM,
    WORKER_VARIABLE,
    EchoClient,
    LifecycleClientFactory,
    LoadRun,
    LoadService,
    LoadSettings,
    OneShot,
    WorkerPool,
    WorkerService,
    workerShare,
)
from ..eventlog import ClosingAfter, EventFile, batchJSONLog
from ..events import LifecycleLog
from ..internet import ClientReactor
from . import _loadoptions
from ._options import (
    EVENTS_OPTIONS,
    checkEvents,
    clientEndpoint,
    globalReactor,
    loadClass,
    twistLogLevel,
    wholeNumber,
)
from ._process import stopAndExit
from ._worker import LAUNCH

LONGEST_MESSAGE = 1 << 24
#: The largest --file one-shot mode sends: it keeps the whole request in
#: memory to check the echo against it.
LONGEST_FILE = 64 << 20
#: Bytes read at a time from --file.
_FILE_CHUNK = 1 << 20
LONGEST_WINDOW = 1 << 26
#: Messages in flight per connection, at most (each has a send time kept).
MOST_IN_FLIGHT = 1 << 16
#: File descriptors kept free for the reactor, logging and the like.
_SPARE_FILES = 32

_LOAD_OPTIONS = ("connections", "duration", "count")
_LOAD_ONLY = (
    "size",
    "rate",
    "pattern",
    "window",
    "json",
    "json-stream",
    "interval",
    "max-p99",
    "max-errors",
    "min-rate",
    "workers",
)


def _positiveNumber(option: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise usage.UsageError(f"{option} must be a number of seconds above 0, not {text!r}.")
    return value


def _openFilesAllowed() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Options(usage.Options):
    synopsis = (
        "[--connect ENDPOINT ... | --host H --port P] "
        "(--message TEXT ... | --file PATH | --connections N [load options])"
    )
    longdesc = (
        "One-shot mode sends the message(s) or the file, half-closes, and writes "
        "the echo to standard output; it exits 0 only if every byte came back "
        "identical.  Put twist's log elsewhere so that standard output holds only "
        "the echo: 'twist --log-file=+ tcpclient ...' logs to standard error.  "
        "Load mode (--connections, --duration or --count) keeps connections busy, "
        "verifies every echoed byte and prints a report.  Each connection's "
        "lifecycle (connect, connected, connect-failed, half-close, close) is "
        "logged as structured events; in load mode at debug level "
        "('twist --log-level=debug' shows them)."
    )
    optFlags = [
        ["trace", None, "Also log every read and write (bytes per call)."],
        [
            "reflect",
            None,
            "Expect each reply to start with the line of a 'twist tcpecho --reflect' "
            "server, check the echo after it, and say who answered and whom it saw "
            "(load mode: connections counted per server and per client address seen).",
        ],
    ]
    optParameters = [
        ["host", None, None, f"Host name or address to connect to (default {DEFAULT_HOST})."],
        ["port", "p", None, f"TCP port to connect to (default {DEFAULT_PORT})."],
        ["file", "f", None, "Send this file ('-': standard input) and check its echo."],
        [
            "timeout",
            "t",
            str(DEFAULT_TIMEOUT),
            "Seconds allowed to connect, and for each wait for more of an echo.",
        ],
        ["protocol", None, None, "Use this EchoClient subclass (a dotted name)."],
        ["connections", "c", None, "Load mode: this many concurrent connections (default 1)."],
        [
            "duration",
            "d",
            None,
            f"Load mode: run this many seconds (default {DEFAULT_DURATION:g}).",
        ],
        ["count", "n", None, "Load mode: complete this many messages in all, then stop."],
        ["size", "s", None, f"Load mode: bytes per message (default {DEFAULT_SIZE})."],
        ["rate", "r", None, "Load mode: send at most this many messages per second in all."],
        [
            "pattern",
            None,
            None,
            "Load mode: rr (one message in flight per connection, the default), "
            "stream (a window of bytes in flight), or connect (connect, one "
            "message, close, again).",
        ],
        [
            "window",
            "w",
            None,
            f"Load mode, stream: bytes in flight per connection (default {DEFAULT_WINDOW}).",
        ],
        ["json", None, None, "Load mode: also write the report as JSON here ('-': stdout)."],
        [
            "interval",
            None,
            None,
            "Load mode: seconds between interval reports (the progress line, --json-stream; "
            "default 1).",
        ],
        [
            "json-stream",
            None,
            None,
            "Load mode: write one JSON object per interval here, and the report at the end "
            "('-': stdout).",
        ],
        ["max-p99", None, None, "Load mode: fail (exit 1) if the p99 latency is over MS ms."],
        [
            "max-errors",
            None,
            None,
            "Load mode: fail (exit 1) with more than N errors (default: any error fails).",
        ],
        ["min-rate", None, None, "Load mode: fail (exit 1) below R messages per second."],
        ["bind", None, None, "Connect from this local IP address (TCP only)."],
        [
            "workers",
            None,
            None,
            "Load mode: share the run among N processes, each with its own reactor "
            "('auto': one per CPU).",
        ],
        *EVENTS_OPTIONS,
    ]
    compData = usage.Completions(
        optActions={
            "file": usage.CompleteFiles(),
            "json": usage.CompleteFiles(),
            "json-stream": usage.CompleteFiles(),
        }
    )

    #: Where C{--file -} reads from (tests give their own).
    stdin: IO[bytes] | None = None

    def __init__(self) -> None:
        usage.Options.__init__(self)
        self["messages"] = []
        self["connects"] = []
        self["connect"] = None

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        # Kept as given: workers run tcpclient again with the same options.
        self.argv = list(sys.argv[1:] if options is None else options)
        usage.Options.parseOptions(self, options)

    def opt_connect(self, description: str) -> None:
        """
        Connect to this client endpoint: tcp:HOST:PORT, unix:PATH, ... (load mode: repeatable).
        """
        if description in self["connects"]:
            raise usage.UsageError(f"--connect {description!r} is given twice.")
        self["connects"].append(description)
        self["connect"] = self["connects"][0]

    def opt_message(self, text: str) -> None:
        """
        Send TEXT and a newline (repeatable: each becomes one line).
        """
        self["messages"].append(text)

    opt_m = opt_message

    def postOptions(self) -> None:
        self._checkTarget()
        if self["bind"] is not None:
            host = self["host"] if not self["connects"] else None
            self["bind"] = _loadoptions.bindAddress(self["bind"], self["connects"], host)
        self["timeout"] = _positiveNumber("--timeout", self["timeout"])
        self["load"] = any(self[name] is not None for name in _LOAD_OPTIONS)
        if self["load"]:
            self._checkLoad()
        else:
            self._checkOneShot()
        checkEvents(self)

    def _checkTarget(self) -> None:
        if self["connects"]:
            if self["host"] is not None or self["port"] is not None:
                raise usage.UsageError("Give --connect or --host/--port, not both.")
            for description in self["connects"]:
                _parseEndpoint(globalReactor(), description)
            return
        host = self["host"] if self["host"] is not None else DEFAULT_HOST
        if not host.strip():
            raise usage.UsageError("--host must name a host or an address, not ''.")
        self["host"] = host.strip().strip("[]")
        if ":" in self["host"] and not isIPv6Address(self["host"]):
            # Resolving it would fail only once the run starts.
            raise usage.UsageError(
                f"--host must name a host or an address, not {host!r}; give the port with --port."
            )
        port = self["port"]
        self["port"] = DEFAULT_PORT if port is None else wholeNumber("--port", port, 1, 65535)

    def _checkOneShot(self) -> None:
        for name in _LOAD_ONLY:
            if self[name] is not None:
                raise usage.UsageError(
                    f"--{name} applies to load mode; add --connections, --duration or --count."
                )
        if self["messages"] and self["file"] is not None:
            raise usage.UsageError("Give --message or --file, not both.")
        if len(self["connects"]) > 1:
            raise usage.UsageError(
                "One-shot mode connects to one --connect; several are for load mode "
                "(add --connections, --duration or --count)."
            )
        if self["file"] is not None:
            self["request"] = self._read(self["file"])
        elif self["messages"]:
            self["request"] = b"".join(text.encode("utf-8") + b"\n" for text in self["messages"])
        else:
            raise usage.UsageError(
                "Give --message TEXT or --file PATH to send, "
                "or --connections/--duration/--count for load mode."
            )
        if self["protocol"] is not None:
            self["protocol"] = loadClass("--protocol", self["protocol"], EchoClient)

    def _read(self, path: str) -> bytes:
        try:
            if path == "-":
                stream = self.stdin if self.stdin is not None else sys.stdin.buffer
                request = _readAtMost(stream, LONGEST_FILE)
            else:
                with open(path, "rb") as f:
                    request = _readAtMost(f, LONGEST_FILE)
        except OSError as e:
            raise usage.UsageError(f"--file {path!r} cannot be read: {e.strerror}.") from None
        except KeyboardInterrupt:
            # Ctrl-C while waiting for standard input: stop, as cat would.
            raise SystemExit(128 + signal.SIGINT) from None
        if request is None:
            raise usage.UsageError(
                f"--file {path!r} holds more than {LONGEST_FILE >> 20} MiB, the most one-shot "
                "mode keeps in memory to check the echo; for volume, use load mode "
                "(--connections N --size BYTES)."
            )
        return request

    def _checkLoad(self) -> None:
        for name in ("messages", "file", "protocol"):
            if self[name]:
                option = "--message" if name == "messages" else f"--{name}"
                raise usage.UsageError(
                    f"{option} applies to one-shot mode; load mode sends generated "
                    "messages of --size bytes."
                )
        allowed = _openFilesAllowed() - _SPARE_FILES
        connections = self["connections"]
        self["connections"] = (
            1 if connections is None else wholeNumber("--connections", connections, 1, 1 << 20)
        )
        if self["connections"] > allowed:
            raise usage.UsageError(
                f"--connections {self['connections']} needs more open files than this "
                f"process may have ({allowed + _SPARE_FILES}); raise the limit "
                "(ulimit -n) or open fewer."
            )
        if self["duration"] is not None and self["count"] is not None:
            raise usage.UsageError("Give --duration or --count, not both.")
        if self["duration"] is not None:
            self["duration"] = _positiveNumber("--duration", self["duration"])
        elif self["count"] is not None:
            self["count"] = wholeNumber("--count", self["count"], 1, 1 << 62)
        else:
            self["duration"] = DEFAULT_DURATION
        size = self["size"]
        self["size"] = (
            DEFAULT_SIZE if size is None else wholeNumber("--size", size, 1, LONGEST_MESSAGE)
        )
        if self["rate"] is not None:
            try:
                rate = float(self["rate"])
            except ValueError:
                rate = 0.0
            if not 0 < rate < float("inf"):
                raise usage.UsageError(
                    f"--rate must be a number of messages per second above 0, not {self['rate']!r}."
                )
            self["rate"] = rate
        pattern = self["pattern"] if self["pattern"] is not None else PATTERNS[0]
        if pattern not in PATTERNS:
            raise usage.UsageError(f"--pattern must be rr, stream or connect, not {pattern!r}.")
        self["pattern"] = pattern
        self._checkWindow()
        _loadoptions.outputs(self["json"], self["json-stream"])
        self["interval"] = _loadoptions.interval(self["interval"])
        self["thresholds"] = _loadoptions.thresholds(
            self["max-p99"], self["max-errors"], self["min-rate"]
        )
        self["workers"] = _loadoptions.workers(self["workers"], self["connections"], self["count"])

    def _checkWindow(self) -> None:
        window = self["window"]
        if window is None:
            self["window"] = max(DEFAULT_WINDOW, self["size"])
            return
        if self["pattern"] != STREAM:
            raise usage.UsageError("--window applies to --pattern stream only.")
        self["window"] = wholeNumber("--window", window, self["size"], LONGEST_WINDOW)
        if self["window"] // self["size"] > MOST_IN_FLIGHT:
            raise usage.UsageError(
                f"--window {self['window']} holds more than {MOST_IN_FLIGHT} messages of "
                f"{self['size']} bytes; raise --size or lower --window."
            )


def _readAtMost(stream: IO[bytes], limit: int) -> bytes | None:
    """
    Everything C{stream} holds, or C{None} once it turns out to hold more
    than C{limit} bytes (C{/dev/zero} never ends).
    """
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(_FILE_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _parseEndpoint(reactor: object, description: str) -> IStreamClientEndpoint:
    return clientEndpoint("--connect", reactor, description)


def describeTarget(host: str, port: int) -> str:
    """
    C{host:port}, with an IPv6 address bracketed as in the events.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def makeEndpoints(options: Options, reactor: IReactorCore) -> dict[str, IStreamClientEndpoint]:
    """
    Every endpoint the options name, by how the events and the report name
    them; each connects through L{ClientReactor} (from C{--bind}, if given).
    """
    connecting = ClientReactor(reactor, bindAddress=options["bind"])
    if options["connects"]:
        return {
            description: _parseEndpoint(connecting, description)
            for description in options["connects"]
        }
    host, port = options["host"], options["port"]
    # The endpoint's own timeout is a backstop: the factory's, the same
    # number of seconds, fires first and says so.
    backstop = options["timeout"] + 1
    endpoint: IStreamClientEndpoint
    if isIPAddress(host):
        endpoint = TCP4ClientEndpoint(connecting, host, port, timeout=backstop)
    elif isIPv6Address(host):
        endpoint = TCP6ClientEndpoint(connecting, host, port, timeout=backstop)
    else:
        # Every address the name has, IPv6 and IPv4, tried as RFC 8305 says.
        endpoint = HostnameEndpoint(connecting, host, port, timeout=backstop)
    return {describeTarget(host, port): endpoint}


def makeEndpoint(options: Options, reactor: IReactorCore) -> tuple[IStreamClientEndpoint, str]:
    """
    The (first) endpoint the options name, and how the events name it.
    """
    [(target, endpoint), *_] = makeEndpoints(options, reactor).items()
    return endpoint, target


def makeService(
    options: Options,
    reactor: IReactorCore | None = None,
    *,
    stdout: IO[bytes] | None = None,
    stderr: IO[str] | None = None,
) -> IService:
    """
    The one-shot exchange or the load run the options ask for.

    @param stdout: Where the echo (one-shot) or the report (load) goes;
        standard output by default, whatever twist has made of C{sys.stdout}
        for its log.
    @param stderr: Where the one-line verdicts and the progress line go.
    """
    if reactor is None:
        reactor = globalReactor()
    # twist's JSON log, written without a flush per event.
    batchJSONLog(getattr(options, "parent", None), reactor)
    realReactor = reactor
    if stdout is None:
        stdout = _realStream(sys.__stdout__).buffer
    if stderr is None:
        stderr = _realStream(sys.__stderr__)

    def done(status: int) -> None:
        stopAndExit(realReactor, status)

    clock = cast(IReactorTime, reactor)
    eventFile = EventFile(options["events"], clock) if options["events"] is not None else None
    service = _makeClient(options, reactor, stdout, stderr, done, eventFile)
    if eventFile is not None:
        return ClosingAfter(service, eventFile, reactor)
    return service


def _makeClient(
    options: Options,
    reactor: IReactorCore,
    stdout: IO[bytes],
    stderr: IO[str],
    done: Callable[[int], None],
    eventFile: EventFile | None,
) -> IService:
    clock = cast(IReactorTime, reactor)
    if not options["load"]:
        endpoint, target = makeEndpoint(options, reactor)
        output = _Output(stdout)
        factory = LifecycleClientFactory(
            options["request"],
            timeout=options["timeout"],
            output=output,
            clock=clock,
            events=LifecycleLog(
                trace=bool(options["trace"]),
                threshold=twistLogLevel(options),
                sink=eventFile,
                phases=options["events-only"],
            ),
            reflect=bool(options["reflect"]),
        )
        if options["protocol"] is not None:
            factory.protocol = options["protocol"]
        oneShot = OneShot(factory, endpoint, target, reactor, errors=stderr, done=done)
        output.failed = oneShot.outputFailed
        return oneShot
    endpoints = makeEndpoints(options, reactor)
    settings = loadSettings(options, ", ".join(endpoints))
    # Per-connection events at debug level, and not even built when twist's
    # --log-level filters them out (the default, info), unless --events asks
    # for them.
    events = LifecycleLog(
        trace=bool(options["trace"]),
        level=LogLevel.debug,
        threshold=twistLogLevel(options),
        sink=eventFile,
        phases=options["events-only"],
    )
    worker = os.environ.get(WORKER_VARIABLE)
    if worker is not None:
        return _workerService(options, worker, settings, endpoints, reactor, events, done)
    progress = stderr if stderr.isatty() else None
    run: LoadRun | WorkerPool
    if options["workers"] > 1:
        run = WorkerPool(
            settings,
            options["workers"],
            _workerCommand(options),
            # IReactorProcess, looked up once the run starts.
            lambda *args, **kwargs: cast(Any, reactor).spawnProcess(*args, **kwargs),
            events=events,
            progress=progress,
        )
    else:
        run = LoadRun(
            settings,
            endpoints,
            clock,
            events=events,
            progress=progress,
            interval=options["interval"],
        )
    return LoadService(
        run,
        reactor,
        output=_TextOutput(stdout),
        errors=stderr,
        json=options["json"],
        stream=options["json-stream"],
        thresholds=options["thresholds"],
        done=done,
    )


def loadSettings(options: Options, target: str) -> LoadSettings:
    """
    The load run the options ask for, against C{target} (the targets' names).
    """
    return LoadSettings(
        target=target,
        pattern=options["pattern"],
        connections=options["connections"],
        size=options["size"],
        window=options["window"],
        duration=options["duration"],
        count=options["count"],
        rate=options["rate"],
        timeout=options["timeout"],
        reflect=bool(options["reflect"]),
    )


def _workerService(
    options: Options,
    worker: str,
    settings: LoadSettings,
    endpoints: dict[str, IStreamClientEndpoint],
    reactor: IReactorCore,
    events: LifecycleLog,
    done: Callable[[int], None],
) -> IService:
    """
    This process is worker INDEX of COUNT (L{WORKER_VARIABLE}): its share of
    the run, reported to the parent.
    """
    index, count = (int(part) for part in worker.split("/"))
    share, firstSlot = workerShare(settings, index, count)
    run = LoadRun(
        share,
        endpoints,
        cast(IReactorTime, reactor),
        events=events,
        interval=options["interval"],
        firstSlot=firstSlot,
    )
    return WorkerService(run, reactor, done=done)


def _workerCommand(options: Options) -> Callable[[int], list[str]]:
    """
    The command line of each worker: twist in a process group of its own
    (L{tcplife.tap._worker}), with this one's reactor and log level (the
    log on standard error), and these tcpclient options, but for
    --workers.
    """
    twistArguments = ["--log-file", _workersLogFile(getattr(options, "parent", None))]
    parent = getattr(options, "parent", None)
    if isinstance(parent, usage.Options):
        twistArguments += ["--reactor", parent.get("reactorName", "default")]
        level = parent.get("logLevel")
        if isinstance(level, LogLevel):
            twistArguments += ["--log-level", level.name]
        if parent.get("logFormat"):
            twistArguments += ["--log-format", parent["logFormat"]]
    arguments = _withoutWorkers(getattr(options, "argv", []))
    command = [sys.executable, "-c", LAUNCH, *twistArguments, "tcpclient", *arguments]
    return lambda index: command


def _workersLogFile(twistOptions: Any) -> str:
    """
    Where the workers log: to the file twist logs to (appending, as twist
    opens it), or else to standard error (standard output stays the
    report's).
    """
    logFile = twistOptions.get("logFile") if isinstance(twistOptions, usage.Options) else None
    name = getattr(logFile, "name", None)
    if isinstance(name, str) and name and not name.startswith("<"):
        return name
    return "+"


def _withoutWorkers(arguments: list[str]) -> list[str]:
    kept: list[str] = []
    skipNext = False
    for argument in arguments:
        if skipNext:
            skipNext = False
        elif argument == "--workers":
            skipNext = True
        elif not argument.startswith("--workers="):
            kept.append(argument)
    return kept


def _realStream(stream: Any) -> Any:
    if stream is None:
        raise SystemExit("tcpclient: standard output or error is closed")
    return stream


class _Output:
    """
    Standard output for the echo.  A reader that goes away (C{| head}: EPIPE)
    stops the copy, not the check; any other write error (a full disk,
    C{/dev/full}) stops the copy and is passed to C{failed}.
    """

    def __init__(self, stream: IO[bytes], failed: Callable[[OSError], None] | None = None) -> None:
        self._stream: IO[bytes] | None = stream
        self.failed = failed

    def write(self, data: bytes) -> None:
        if self._stream is not None:
            try:
                self._stream.write(data)
            except OSError as e:
                self._stop(e)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except OSError as e:
                self._stop(e)

    def _stop(self, error: OSError) -> None:
        self._stream = None
        if error.errno != errno.EPIPE and self.failed is not None:
            self.failed(error)


class _TextOutput:
    """
    Text onto a binary stream, flushed at once so it keeps its place among
    twist's log lines when both go to standard output.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        self._stream.write(text.encode("utf-8"))

    def flush(self) -> None:
        self._stream.flush()
