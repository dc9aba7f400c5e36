"""
The README and the pages of C{docs/} say what is true: every fenced block
in them is marked as an example (C{<!-- example: NAME -->}: what a reader
runs or saves) or a sample (C{<!-- sample: NAME -->}: what tcplife prints),
and a test here (or one that names it with L{checks}) runs or compares it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import eventFromJSON, formatEventAsClassicLogText
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tcplife.tap.echo import Options, makeService

from ..certs import SelfSigned
from ..helpers import (
    BIN,
    WAIT,
    TwistProcess,
    echoWithHalfClose,
    freePort,
    portOf,
    readLine,
    recvUntilEOF,
    runTwist,
    startTcpecho,
)
from ..servers import runClient, temporaryDirectory, verdict

ROOT = Path(__file__).parent.parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_Test = TypeVar("_Test", bound=Callable[..., Any])

#: Every marked block a test checks: its name, and the test that checks it.
CHECKED: dict[str, str] = {}


def checks(*names: str) -> Callable[[_Test], _Test]:
    """
    Declare that the decorated test checks the marked blocks C{names}.
    """

    def declare(test: _Test) -> _Test:
        for name in names:
            CHECKED.setdefault(name, test.__qualname__)
        return test

    return declare


def pages() -> list[Path]:
    """
    The README and every page of C{docs/}.
    """
    return [README, *sorted(DOCS.glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """
    A fenced block of a page, and the marker before it (if any).
    """

    page: Path
    line: int
    kind: str | None
    name: str | None
    language: str
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


_FENCED = re.compile(
    r"^(?:<!-- (example|sample): (\S+) -->\n)?```([\w.+-]*)\n(.*?)^```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


def blocks() -> Iterator[Block]:
    """
    Every fenced block of every page, in order.
    """
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for found in _FENCED.finditer(text):
            kind, name, language, body = found.groups()
            line = text.count("\n", 0, found.start()) + 1
            yield Block(page, line, kind, name, language, body)


def block(name: str) -> Block:
    """
    The block marked C{name}; shown on several pages, it is the same on all.
    """
    found = [b for b in blocks() if b.name == name]
    assert found, f"no page has a block marked {name}"
    texts = {b.text for b in found}
    assert len(texts) == 1, f"{name} differs between {[b.where() for b in found]}"
    return found[0]


def exampleCode(name: str) -> str:
    """
    The text of the block marked C{name}.
    """
    return block(name).text


def logicalLines(text: str) -> list[str]:
    """
    The shell lines of C{text}: continuation lines joined, blank lines and
    comments dropped.
    """
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and line.lstrip()[:1] != "#"]


_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "2>&1"}


def shellWords(line: str) -> list[str]:
    """
    C{line} split into words as a shell splits it (quotes, backslashes,
    comments), operators such as C{|}, C{&} and C{>} as words of their own.
    """
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def twistWords(line: str) -> list[str] | None:
    """
    The C{twist} command of a shell line (from C{twist} up to the first
    shell operator or redirection), or C{None} if the line runs no twist.
    """
    # Redirections (2>/dev/null, 2>&1, > FILE) end the command's words.
    words = shellWords(re.sub(r"\s\d?>>?(&\d|\s*\S+)", " ", line))
    start = next((i for i, word in enumerate(words) if Path(word).name == "twist"), None)
    if start is None:
        return None
    command = []
    for word in words[start:]:
        if word in _OPERATORS or word.startswith((">", "<", "|", "&")):
            break
        command.append(word)
    return command


def twistCommands(name: str) -> list[list[str]]:
    """
    Every C{twist} command of the shell example C{name}.
    """
    commands = [twistWords(line) for line in logicalLines(exampleCode(name))]
    found = [c for c in commands if c is not None]
    assert found, f"{name} runs no twist command"
    return found


def withOption(words: list[str], option: str, value: str, after: str) -> list[str]:
    """
    C{words} with C{option}'s value replaced by C{value}, or the option added
    just after the word C{after} (the plugin's name) if absent.
    """
    words = list(words)
    for i, word in enumerate(words):
        if word == option:
            words[i + 1] = value
            return words
        if word.startswith(option + "="):
            words[i] = f"{option}={value}"
            return words
    at = words.index(after) + 1
    return [*words[:at], option, value, *words[at:]]


def withoutOption(words: list[str], option: str) -> list[str]:
    """
    C{words} without C{option} and its value.
    """
    at = words.index(option)
    return [*words[:at], *words[at + 2 :]]


#: Parses each command given (a JSON list of argv lists, in the file named
#: by its first argument) with twist's own options and the plugin's, as
#: twist would, without installing a reactor or opening a log file; prints
#: one error message per command ("" for none), as JSON.
_PARSER = """
import json, sys
from twisted.application.reactors import getReactorTypes
from twisted.application.twist._options import TwistOptions
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError

class Parsed(TwistOptions):
    def installReactor(self, name):
        if name not in {r.shortName for r in getReactorTypes()}:
            raise UsageError(f"no reactor named {name}")
        return MemoryReactorClock()
    def opt_log_file(self, name):
        self["logFileName"] = name

errors = []
for argv in json.load(open(sys.argv[1])):
    try:
        Parsed().parseOptions(argv[1:])
        errors.append("")
    except (UsageError, SystemExit) as e:
        errors.append(str(e) or repr(e))
print(json.dumps(errors))
"""


def describePeer(client: socket.socket) -> str:
    """
    A client's own address as the server's events name it (C{host:port}).
    """
    host, port = client.getsockname()[:2]
    return f"{host}:{port}"


def writeExamples(directory: Path, *names: str) -> None:
    """
    Save the Python examples C{names} in C{directory}, as the docs say to.
    """
    for name in names:
        (directory / name).write_text(exampleCode(name), encoding="utf-8")


def parseErrors(test: SynchronousTestCase, commands: list[list[str]]) -> list[str]:
    """
    Parse C{commands} in a folder holding the docs' Python examples and the
    files the commands name, on C{PYTHONPATH} as the docs set it.
    """
    directory = temporaryDirectory(test)
    writeExamples(directory, "upper_echo.py", "upper_client.py")
    (directory / "payload.bin").write_bytes(b"payload\n")
    (directory / "commands.json").write_text(json.dumps(commands), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", _PARSER, "commands.json"],
        cwd=directory,
        env=dict(os.environ, PYTHONPATH=str(directory)),
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )
    test.assertEqual(done.returncode, 0, done.stderr)
    errors: list[str] = json.loads(done.stdout)
    return errors


def logShape(line: str) -> str:
    """
    A text log line without its time, and with every number (ports,
    addresses, descriptor limits, durations) as N.
    """
    return re.sub(r"\d+", "N", line.split(" ", 1)[1])


def reportShape(line: str) -> str:
    """
    A report line with every figure (commas and decimals included) as N,
    and C{1 segment} as C{N segments}.
    """
    shape = re.sub(r"\d[\d,]*(\.\d+)?", "N", line)
    return re.sub(r"\bN segment$", "N segments", shape)


def isLogLine(line: str) -> bool:
    return re.match(r"\d{4}-\d\d-\d\dT", line) is not None


def session(name: str) -> list[tuple[str, list[str]]]:
    """
    The sample C{name} as a terminal session: each C{$ } command with the
    lines it printed.
    """
    commands: list[tuple[str, list[str]]] = []
    for line in exampleCode(name).splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            commands[-1][1].append(line)
    return commands


class DocsTests(SynchronousTestCase):
    """
    The pages hang together: every block is marked and checked, every page
    is linked from the README, and no private module is named.
    """

    def test_everyFencedBlockIsMarked(self) -> None:
        """
        Every fenced block of the README and of docs/ follows an example or
        sample marker.
        """
        unmarked = [b.where() for b in blocks() if b.name is None]
        self.assertEqual(unmarked, [])

    def test_everyMarkedBlockIsCheckedAndEveryCheckHasItsBlock(self) -> None:
        """
        Each marked block's name is checked by a test, and each name a test
        checks still marks a block.
        """
        from . import test_haproxy  # noqa: F401  (its tests check haproxy.cfg)

        marked = {b.name for b in blocks() if b.name is not None}
        self.assertEqual(sorted(marked - set(CHECKED)), [], "marked but never checked")
        self.assertEqual(sorted(set(CHECKED) - marked), [], "checked but marks nothing")

    def test_aBlockShownTwiceIsTheSameOnEveryPage(self) -> None:
        """
        A name marking blocks on several pages marks the same text on each.
        """
        texts: dict[str, set[str]] = {}
        for b in blocks():
            if b.name is not None:
                texts.setdefault(b.name, set()).add(b.text)
        self.assertEqual(sorted(name for name, seen in texts.items() if len(seen) > 1), [])

    def test_noPageNamesAPrivateModule(self) -> None:
        """
        No page names a private module, as a dotted name
        (C{tcplife.server._factory}) or as a file (C{_factory.py}).
        """
        private = re.compile(r"\btcplife(?:\.\w+)*\._[a-z]\w*|(?<![\w_])_[a-z]\w*\.py\b")
        named = [
            f"{page.relative_to(ROOT)}: {found.group(0)}"
            for page in pages()
            for found in private.finditer(page.read_text(encoding="utf-8"))
        ]
        self.assertEqual(named, [])

    def test_readmeLinksEveryDocsPageAndEachLinkLeadsSomewhere(self) -> None:
        """
        The README links every page of docs/ and no page that is missing;
        every relative link of every page names a file that exists and,
        with a C{#fragment}, a heading of that file.
        """
        readme = README.read_text(encoding="utf-8")
        linked = {DOCS / Path(target).name for target in re.findall(r"\]\(docs/([^)#]+)", readme)}
        self.assertEqual(sorted(linked), sorted(DOCS.glob("*.md")))
        broken = []
        for page in pages():
            for target in re.findall(r"\]\(([^)]+)\)", page.read_text(encoding="utf-8")):
                if re.match(r"\w+://", target):
                    continue
                path, _, fragment = target.partition("#")
                linkedPage = (page.parent / path) if path else page
                if not linkedPage.exists() or (
                    fragment and fragment not in headingAnchors(linkedPage)
                ):
                    broken.append(f"{page.name}: {target}")
        self.assertEqual(broken, [])

    def test_serverOptionTableHasEveryTcpechoOption(self) -> None:
        """
        The server page's option table has a row for each option of
        C{twist tcpecho}, and for no option it does not have.
        """
        rows = re.findall(r"^\| `--([\w-]+)", (DOCS / "server.md").read_text(), re.MULTILINE)
        self.assertEqual(sorted(rows), sorted(pluginOptions(Options)))

    def test_clientOptionTablesHaveEveryTcpclientOption(self) -> None:
        """
        The client page's option tables (one exchange, load) have a row for
        each option of C{twist tcpclient}, and for no option it does not
        have.
        """
        from tcplife.tap.client import Options as ClientOptions

        rows = re.findall(r"^\| `--([\w-]+)", (DOCS / "client.md").read_text(), re.MULTILINE)
        self.assertEqual(sorted(set(rows)), sorted(pluginOptions(ClientOptions)))

    def test_eventTableListsEveryPhase(self) -> None:
        """
        The event contract's table has a row for each phase tcplife emits,
        and for no other.
        """
        from tcplife.events import PHASES

        text = (DOCS / "events.md").read_text(encoding="utf-8")
        # The phases' table, before the sections on the tcp object and the rest.
        text = text[: text.index("\n## ")]
        rows = re.findall(r"^\| `([\w-]+)` \|", text, re.MULTILINE)
        self.assertEqual(sorted(row for row in rows if row != "lifecycle"), sorted(PHASES))

    def test_metricsTableHasEverySeriesTheServerServes(self) -> None:
        """
        The server page's metrics table names each series the metrics
        endpoint serves (counters with their C{_total}), and no other.
        """
        from tcplife import LifecycleServerFactory
        from tcplife.server import ServerCollector

        factory = LifecycleServerFactory(clock=MemoryReactorClock())
        served = {
            family.name + ("_total" if family.type == "counter" else "")
            for family in ServerCollector(factory, list).collect()
        }
        text = (DOCS / "server.md").read_text(encoding="utf-8")
        table = text[text.index("## Metrics") :]
        rows = re.findall(r"^\|([^|]*)\|", table, re.MULTILINE)
        documented = {name for row in rows for name in re.findall(r"`(tcplife_\w+)", row)}
        self.assertEqual(sorted(documented), sorted(served))


def pluginOptions(options: type[Any]) -> list[str]:
    """
    The long options of a plugin's C{Options}, but C{--help} and
    C{--version}, which every twist plugin has.
    """
    return [o.rstrip("=") for o in options().longOpt if o not in ("help", "version")]


def headingAnchors(page: Path) -> set[str]:
    """
    The anchors a Markdown renderer gives the headings of C{page}: lower
    case, punctuation dropped, spaces as hyphens.
    """
    headings = re.findall(r"^#+ (.*)$", page.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


#: The shell examples whose every twist command is parsed as twist parses it.
PARSED_EXAMPLES = (
    "tcpecho-commands",
    "readme-tcpecho",
    "tcpclient-commands",
    "tcpclient-load-commands",
    "reuse-port-loop",
    "workers-commands",
    "fault-commands",
)


class CommandTests(SynchronousTestCase):
    """
    The shell examples mean, to a shell and to twist, what the docs say.
    """

    @checks(*PARSED_EXAMPLES)
    def test_twistCommandsParseAsTwistParsesThem(self) -> None:
        """
        Every twist command of the docs' shell examples, split as a shell
        splits it, is accepted by twist and its plugin's options (files and
        modules they name in place).
        """
        commands = [words for name in PARSED_EXAMPLES for words in twistCommands(name)]
        errors = parseErrors(self, commands)
        self.assertEqual([(" ".join(c), e) for c, e in zip(commands, errors, strict=True) if e], [])

    @checks("tcpecho-commands")
    def test_tcpechoListenCommandListensWhereItSays(self) -> None:
        """
        The C{--listen} example listens on IPv6's every address (C{::}) and on
        the UNIX path it names.
        """
        directory = temporaryDirectory(self)
        writeExamples(directory, "upper_echo.py")
        [words] = [w for w in twistCommands("tcpecho-commands") if "--listen" in w]
        options = Options()
        options.parseOptions(words[words.index("tcpecho") + 1 :])
        reactor = MemoryReactorClock()
        makeService(options, reactor).startService()
        [(port, _, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (9000, "::"))
        self.assertEqual([s[0] for s in reactor.unixServers], ["/run/echo.sock"])

    @checks("quick-start", "quick-start-log")
    def test_quickStartIsMakeServeAndMakeTestAndServeRunsTcpecho(self) -> None:
        """
        The Quick start's commands are C{make serve} and C{make test}, and
        C{make serve} runs the twist command its comment and its sample log
        show.
        """
        commands = [shellWords(line) for line in logicalLines(exampleCode("quick-start"))]
        self.assertEqual(commands, [["make", "serve"], ["make", "test"]])
        recipe = subprocess.run(
            ["make", "--no-print-directory", "-n", "serve"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        self.assertEqual(recipe.returncode, 0, recipe.stderr)
        sample = exampleCode("quick-start-log").splitlines()
        self.assertEqual(sample[:2], ["$ make serve", recipe.stdout.splitlines()[-1]])
        comment = exampleCode("quick-start").splitlines()[0].split("runs: ", 1)[1]
        self.assertEqual(sample[1].replace(".venv/bin/", ""), comment)

    @checks("make-targets", "bench-commands")
    def test_makeLinesNameRealTargetsAndTheirArgumentsParse(self) -> None:
        """
        Every C{make} line of the development and performance pages names a
        Makefile target (C{make -n} accepts it), each bench command's
        arguments are accepted by the bench, and each pytest line collects
        tests.
        """
        lines = [
            shellWords(line)
            for name in ("make-targets", "bench-commands")
            for line in logicalLines(exampleCode(name))
        ]
        for words in lines:
            if words[0] == "make":
                dryRun = subprocess.run(
                    ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, timeout=WAIT
                )
                self.assertEqual(dryRun.returncode, 0, (words, dryRun.stderr))
                benchArgs = [w.split("=", 1)[1] for w in words if w.startswith("BENCH_ARGS=")]
                if words[1] == "bench":
                    assertBenchAccepts(self, shlex.split(benchArgs[0]) if benchArgs else [])
            elif words[1:3] == ["-m", "tcplife.bench"]:
                assertBenchAccepts(self, words[3:])
            else:
                self.assertEqual(words[:3], [".venv/bin/python", "-m", "pytest"], words)
                collected = subprocess.run(
                    [sys.executable, "-m", "pytest", "--collect-only", "-q", *words[3:]],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=WAIT * 3,
                )
                self.assertEqual(collected.returncode, 0, (words, collected.stdout[-2000:]))
                self.assertRegex(collected.stdout, r"\n[1-9]\d*(/\d+)? tests? collected")

    @checks("install")
    def test_installedTwistListsBothPlugins(self) -> None:
        """
        The install example installs the project (C{pip install .}) and its
        C{twist --help} lists tcpecho and tcpclient.
        """
        commands = [shellWords(line) for line in logicalLines(exampleCode("install"))]
        self.assertEqual(commands, [["pip", "install", "."], ["twist", "--help"]])
        listed = runTwist("--help")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        plugins = re.findall(r"^\s+(\S+)\s", listed.stdout.split("Commands:", 1)[1], re.M)
        self.assertIn("tcpecho", plugins)
        self.assertIn("tcpclient", plugins)


class _BenchArgumentsAcceptedError(Exception):
    """
    The bench got past its argument checks.
    """


def assertBenchAccepts(test: SynchronousTestCase, argv: list[str]) -> None:
    """
    C{python -m tcplife.bench ARGV} gets past its argument checks (the run
    itself is stopped before it starts).
    """
    from tcplife.bench import __main__ as bench

    with mock.patch.object(bench, "runBench", side_effect=_BenchArgumentsAcceptedError):
        test.assertRaises(_BenchArgumentsAcceptedError, bench.main, argv)


class ServerExampleTests(SynchronousTestCase):
    """
    The server's examples run as written, and its samples are what twist
    prints.
    """

    @checks("upper_echo.py", "upper-echo-commands")
    def test_upperEchoServedAsTheDocsSayShoutsAndLogs(self) -> None:
        """
        The docs' C{UpperEcho}, saved as C{upper_echo.py} and served with the
        docs' command (on a free port), shouts the echo back and logs accept,
        each read and write (C{--trace}), half-close and close.
        """
        code = exampleCode("upper_echo.py")
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        directory = temporaryDirectory(self)
        writeExamples(directory, "upper_echo.py")
        [words] = twistCommands("upper-echo-commands")
        server, port = startTcpecho(
            self,
            *withoutOption(words, "--port")[2:],
            env=dict(os.environ, PYTHONPATH=str(directory)),
        )
        self.assertEqual(echoWithHalfClose(port, b"quiet please\n"), b"QUIET PLEASE\n")
        close = server.waitFor(lifecycle="close")
        self.assertEqual((close["how"], close["bytes_out"]), ("fin", 13))
        connId = close["conn_id"]
        server.waitFor(lifecycle="accept", conn_id=connId)
        server.waitFor(lifecycle="read", conn_id=connId, bytes=13)
        server.waitFor(lifecycle="write", conn_id=connId, bytes=13)
        server.waitFor(lifecycle="half-close", conn_id=connId)

    @checks("serve_upper.py")
    def test_ownProgramServesUpperEchoUnderItsCap(self) -> None:
        """
        The docs' own program, run with its port changed to a free one, logs
        C{listen}, shouts the echo back with the connection's lifecycle
        events, and with its 100 connections open leaves the 101st client
        waiting in the kernel's queue until one closes.
        """
        code = exampleCode("serve_upper.py")
        self.assertIn('"tcp:9000:backlog=128"', code)
        self.assertIn("maxConnections=100", code)
        directory = temporaryDirectory(self)
        writeExamples(directory, "upper_echo.py")
        port = freePort()
        (directory / "serve_upper.py").write_text(code.replace("9000", str(port)), encoding="utf-8")
        (directory / "logged.py").write_text(_LOGGED, encoding="utf-8")
        server = TwistProcess(
            cwd=str(directory),
            env=dict(os.environ, PYTHONPATH=str(directory)),
            launcher=(sys.executable, "-u", "logged.py"),
            twist=Path("serve_upper.py"),
        )
        self.addCleanup(server.kill)
        listen = server.waitFor(lifecycle="listen")
        self.assertEqual((portOf(listen["address"]), listen["backlog"]), (port, 128))
        self.assertEqual(echoWithHalfClose(port, b"quiet please\n"), b"QUIET PLEASE\n")
        close = server.waitFor(lifecycle="close")
        self.assertEqual((close["how"], close["bytes_in"], close["bytes_out"]), ("fin", 13, 13))

        clients = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(100)]
        self.addCleanup(lambda: [client.close() for client in clients])
        for client in clients:
            client.sendall(b"quiet\n")
            self.assertEqual(readLine(client), b"QUIET\n")
        self.assertEqual(server.waitFor(lifecycle="accept-paused")["open"], 100)
        late = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.addCleanup(late.close)
        late.sendall(b"late\n")
        first = server.waitFor(lifecycle="accept", peer=describePeer(clients[0]))
        clients[0].close()
        self.assertEqual(readLine(late), b"LATE\n")
        closed = server.waitFor(lifecycle="close", conn_id=first["conn_id"])
        latest = server.waitFor(lifecycle="accept", peer=describePeer(late))
        self.assertLess(server.events.index(closed), server.events.index(latest))

    @checks("patient.py")
    def test_subclassDefaultsStandUnlessAnOptionSaysOtherwise(self) -> None:
        """
        The docs' C{Patient}, served with C{--factory patient.Patient}, has
        its 30 s idle timeout; with C{--idle-timeout 5} as well, 5 s.
        """
        directory = temporaryDirectory(self)
        writeExamples(directory, "patient.py")
        sys.path.insert(0, str(directory))
        self.addCleanup(sys.path.remove, str(directory))
        self.addCleanup(sys.modules.pop, "patient", None)
        for extra, idle in [((), 30), (("--idle-timeout", "5"), 5)]:
            options = Options()
            options.parseOptions(["--factory", "patient.Patient", *extra])
            service = makeService(options, MemoryReactorClock())
            factory = service.server.factory  # type: ignore[attr-defined]
            self.assertEqual(
                (type(factory).__name__, factory.settings.idleTimeout), ("Patient", idle)
            )

    @checks("test_upper_echo.py")
    def test_unitTestExamplePassesUnderTrial(self) -> None:
        """
        The docs' unit test of C{UpperEcho}, saved beside C{upper_echo.py},
        passes under trial; against a protocol that does not shout, it fails.
        """
        directory = temporaryDirectory(self)
        writeExamples(directory, "upper_echo.py", "test_upper_echo.py")

        def trial() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "twisted.trial", "test_upper_echo"],
                cwd=directory,
                env=dict(os.environ, PYTHONPATH=str(directory)),
                capture_output=True,
                text=True,
                timeout=WAIT,
            )

        passed = trial()
        self.assertEqual(passed.returncode, 0, passed.stdout)
        self.assertIn("PASSED (successes=1)", passed.stdout)
        (directory / "upper_echo.py").write_text(
            exampleCode("upper_echo.py").replace("data.upper()", "data"), encoding="utf-8"
        )
        self.assertEqual(trial().returncode, 1)

    @checks("endpoint-errors", "systemd-error")
    def test_endpointErrorsAreWhatTwistSays(self) -> None:
        """
        Each endpoint error the docs show is the first line twist prints for
        that description, with status 64 (with a C{key.pem} that holds only
        a key in the working directory, and no inherited socket).
        """
        directory = temporaryDirectory(self)
        (directory / "key.pem").write_bytes(SelfSigned(directory / "pair").keyPEM)
        lines = [*exampleCode("endpoint-errors").splitlines(), exampleCode("systemd-error")]
        for line in filter(None, "\n".join(lines).splitlines()):
            description = line.split("'")[1]
            result = runTwist("tcpecho", "--listen", description, cwd=str(directory))
            self.assertEqual(result.returncode, 64, result.stderr)
            self.assertEqual(result.stderr.splitlines()[0], line)

    @checks("listen-failure")
    def test_listenFailureIsTheOneLineShownAndStatusOne(self) -> None:
        """
        tcpecho on a port another socket listens on prints the docs' line
        (for that port) and exits 1.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = runTwist("tcpecho", "--port", str(port), "--interface", "127.0.0.1")
        self.assertEqual(result.returncode, 1, result.stderr)
        expected = exampleCode("listen-failure").strip().replace(":9000:", f":{port}:")
        self.assertEqual(result.stderr.strip().splitlines()[-1], expected)

    @checks("tls-commands")
    def test_tlsCommandsServeTheCertificateTheyMake(self) -> None:
        """
        The TLS example, run in an empty folder: its openssl command makes a
        key and a certificate that C{twist tcpecho --listen ssl:...} serves
        (on a free port here) to a client that verifies it for localhost
        with that certificate as its only trust root.
        """
        makeCertificate, serve, _ = (
            shellWords(line) for line in logicalLines(exampleCode("tls-commands"))
        )
        if not shutil.which(makeCertificate[0]):
            raise SkipTest("openssl is not installed")
        directory = temporaryDirectory(self)
        subprocess.run(
            makeCertificate, cwd=directory, check=True, capture_output=True, timeout=WAIT
        )
        port = freePort()
        listen = serve[serve.index("--listen") + 1].replace(
            "ssl:9443:", f"ssl:{port}:interface=127.0.0.1:"
        )
        server = TwistProcess("tcpecho", "--listen", listen, cwd=str(directory))
        self.addCleanup(server.kill)
        self.assertEqual(portOf(server.waitFor(lifecycle="listen")["address"]), port)
        context = ssl.create_default_context(cafile=str(directory / "cert.pem"))
        raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        with context.wrap_socket(raw, server_hostname="localhost") as client:
            client.sendall(b"over TLS\n")
            self.assertEqual(readLine(client), b"over TLS\n")

    @checks("quick-start-client")
    def test_quickStartClientLineIsEchoed(self) -> None:
        """
        The Quick start's C{printf | nc -N} line, run by a shell against a
        tcpecho (its port for 9000), prints the echo.
        """
        _, port = startTcpecho(self)
        [line] = logicalLines(exampleCode("quick-start-client"))
        done = subprocess.run(
            ["sh", "-c", line.replace(" 9000", f" {port}")],
            capture_output=True,
            timeout=WAIT,
        )
        self.assertEqual((done.returncode, done.stdout), (0, b"hello\n"), done.stderr)

    @checks("quick-start-log")
    def test_quickStartLogIsEveryLineTcpechoLogs(self) -> None:
        """
        The Quick start's log of C{make serve} and one C{nc -N} client has
        every line tcpecho logs in that session, in order, the same but for
        times, addresses and numbers.
        """
        server, port = startTcpecho(self)
        self.assertEqual(echoWithHalfClose(port, b"hello\n"), b"hello\n")
        server.waitFor(lifecycle="close")
        live = [
            formatEventAsClassicLogText(eventFromJSON(json.dumps(event))) for event in server.events
        ]
        documented = [
            line for line in exampleCode("quick-start-log").splitlines() if isLogLine(line)
        ]
        self.assertEqual(
            [logShape(line) for line in documented], [logShape(line.rstrip("\n")) for line in live]
        )

    @checks("json-log")
    def test_jsonSampleMatchesALiveSession(self) -> None:
        """
        The session the event contract describes (nc sends 'hello' and
        half-closes, then SIGTERM), run now, logs the same lifecycle records
        with the same fields and, apart from addresses and times, the same
        values.
        """
        sample = [json.loads(line) for line in exampleCode("json-log").splitlines() if line]
        self.assertEqual(
            [r["lifecycle"] for r in sample],
            ["listen", "accept", "half-close", "close", "stop-listening", "drain", "drained"],
        )
        server, port = startTcpecho(self)
        self.assertEqual(echoWithHalfClose(port, b"hello\n"), b"hello\n")
        server.waitFor(lifecycle="close")
        server.signal(signal.SIGTERM)
        server.waitFor(lifecycle="drained")
        live = [e for e in server.events if "lifecycle" in e]
        self.assertEqual([e["lifecycle"] for e in live], [r["lifecycle"] for r in sample])
        for documented, actual in zip(sample, live, strict=True):
            self.assertEqual(sorted(documented), sorted(actual))
            self.assertEqual(
                sorted(documented.get("log_flattened", {})),
                sorted(actual.get("log_flattened", {})),
            )
            # The kernel's figures are the run's; their names are the contract.
            self.assertEqual(list(documented.get("tcp", {})), list(actual.get("tcp", {})))
            # A per-connection event's log_format is its rendered message,
            # addresses and times included; a template is compared as is.
            varying = _RUN_SPECIFIC
            if "{" not in documented["log_format"]:
                varying = _RUN_SPECIFIC | {"log_format"}
            self.assertEqual(
                {k: v for k, v in documented.items() if k not in varying},
                {k: v for k, v in actual.items() if k not in varying},
            )

    @checks("events-close-line")
    def test_eventsCloseLineIsWhatTcpechoWrites(self) -> None:
        """
        The --events-only close line shown is what tcpecho writes for an
        echo: the same fields in the same order, the kernel's among them, and
        apart from addresses, times and the kernel's figures the same values.
        """
        [sample] = [json.loads(line) for line in exampleCode("events-close-line").splitlines()]
        path = temporaryDirectory(self) / "events.jsonl"
        server, port = startTcpecho(self, "--events", str(path), "--events-only", "close")
        self.assertEqual(echoWithHalfClose(port, b"hello\n"), b"hello\n")
        server.signal(signal.SIGTERM)
        [line] = [json.loads(text) for text in path.read_bytes().splitlines()]
        self.assertEqual(list(line), list(sample))
        self.assertEqual(list(line["tcp"]), list(sample["tcp"]))
        varying = _RUN_SPECIFIC | {"time"}
        self.assertEqual(
            {k: v for k, v in line.items() if k not in varying},
            {k: v for k, v in sample.items() if k not in varying},
        )


#: Fields whose values depend on the run (addresses, times), not the code.
_RUN_SPECIFIC = {
    "address",
    "endpoint",
    "peer",
    "local",
    "log_time",
    "duration_s",
    "log_flattened",
    "opened_at",
    "tcp",
}

#: Runs the Python program named by its first argument with twisted.logger's
#: events written to standard output as JSON, as twist would write them.
_LOGGED = """
import runpy, sys
from twisted.logger import globalLogBeginner, jsonFileLogObserver
globalLogBeginner.beginLoggingTo([jsonFileLogObserver(sys.stdout)])
runpy.run_path(sys.argv[1], run_name="__main__")
"""


class ClientExampleTests(SynchronousTestCase):
    """
    The client's examples and samples are what twist tcpclient does.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        writeExamples(self.directory, "upper_echo.py", "upper_client.py", "echo_once.py")
        self.env = dict(os.environ, PYTHONPATH=str(self.directory))

    def serve(self, *args: str) -> int:
        _, port = startTcpecho(self, *args, env=self.env)
        return port

    def runTwist(self, words: list[str]) -> subprocess.CompletedProcess[str]:
        """
        Run the twist command C{words} in the examples' folder.
        """
        return subprocess.run(
            [str(BIN / "twist"), *words[1:]],
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )

    @checks("readme-tcpclient", "tcpclient-session")
    def test_sessionsPrintWhatTheDocsShow(self) -> None:
        """
        Each client session shown, run against a tcpecho (with a text log,
        as on a terminal), prints the same echo on standard output and the
        same log lines but for times, ports and durations on standard error.
        """
        port = self.serve()
        for name in ("readme-tcpclient", "tcpclient-session"):
            for command, printed in session(name):
                words = twistWords(command)
                assert words is not None
                words = withOption(words, "--port", str(port), "tcpclient")
                words.insert(1, "--log-format=text")
                done = self.runTwist(words)
                self.assertEqual(done.returncode, 0, done.stderr)
                self.assertEqual(
                    done.stdout.splitlines(), [line for line in printed if not isLogLine(line)]
                )
                if "2>/dev/null" not in command:
                    self.assertEqual(
                        [logShape(line) for line in done.stderr.splitlines()],
                        [logShape(line) for line in printed if isLogLine(line)],
                    )

    @checks("tcpclient-errors")
    def test_errorLinesAreTheLastLineTheClientPrints(self) -> None:
        """
        The refused connection (on a port nobody listens on) and the
        differing echo (from the docs' upper-casing server) end with the
        lines shown, for those ports.
        """
        ports = {
            "9": str(freePort()),
            "9001": str(self.serve("--protocol", "upper_echo.UpperEcho")),
        }
        for command, [expected] in session("tcpclient-errors"):
            words = twistWords(command)
            assert words is not None
            documented = words[words.index("--port") + 1]
            words = withOption(words, "--port", ports[documented], "tcpclient")
            done = self.runTwist(words)
            self.assertNotEqual(done.returncode, 0)
            self.assertEqual(
                done.stderr.splitlines()[-1],
                expected.replace(f":{documented}:", f":{ports[documented]}:"),
            )

    @checks("load-reports")
    def test_loadReportsHaveTheLinesShown(self) -> None:
        """
        Each load run shown, run for one second against a tcpecho, prints a
        report with the same lines but for its figures.
        """
        port = self.serve()
        for command, printed in session("load-reports"):
            words = twistWords(command)
            assert words is not None
            for option in ("--duration", "-d"):
                if option in words:
                    words = withOption(words, option, "1", "tcpclient")
            words = withOption(words, "--port", str(port), "tcpclient")
            done = self.runTwist(words)
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertEqual(
                [reportShape(line) for line in done.stdout.splitlines()],
                [reportShape(line) for line in printed if not isLogLine(line)],
            )

    @checks("load-json")
    def test_jsonReportHasTheFieldsShown(self) -> None:
        """
        The run the JSON report comes from (a tenth of its count) writes a
        report with the same fields, the same settings, and every message
        counted.
        """
        sample = json.loads(exampleCode("load-json"))
        [words] = [w for w in twistCommands("tcpclient-load-commands") if "--json" in w]
        self.assertEqual(words[words.index("--count") + 1], str(sample["messages"]))
        words = withOption(words, "--count", str(sample["messages"] // 10), "tcpclient")
        words = withOption(words, "--port", str(self.serve()), "tcpclient")
        done = self.runTwist(words)
        self.assertEqual(done.returncode, 0, done.stderr)
        report = json.loads((self.directory / words[words.index("--json") + 1]).read_text())
        self.assertEqual(sorted(report), sorted(sample))
        for nested in ("errors", "latency_us"):
            self.assertEqual(sorted(report[nested]), sorted(sample[nested]))
        settings = ("pattern", "connections", "size", "window", "rate", "interrupted")
        self.assertEqual({k: report[k] for k in settings}, {k: sample[k] for k in settings})
        self.assertEqual(report["messages"], sample["messages"] // 10)
        self.assertEqual(report["bytes"], report["messages"] * report["size"])

    @checks("load-json-stream")
    def test_jsonStreamHasTheFieldsShown(self) -> None:
        """
        A run with --interval and --json-stream - writes interval objects
        with the fields shown, in order, then the report as an end object.
        """
        [sample] = [json.loads(line) for line in exampleCode("load-json-stream").splitlines()]
        port = self.serve()
        done = self.runTwist(
            ["twist", "--log-file=+", "tcpclient", "--port", str(port), "-c", "2",
             "-d", "1", "--interval", "0.25", "--json-stream", "-"]
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr)
        *intervals, end = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertGreaterEqual(len(intervals), 3)
        self.assertEqual([i["interval"] for i in intervals], list(range(1, len(intervals) + 1)))
        for interval in intervals:
            self.assertEqual(sorted(interval), sorted(sample))
            for nested in ("errors", "latency_us"):
                self.assertEqual(sorted(interval[nested]), sorted(sample[nested]))
        self.assertEqual(end["event"], "end")
        self.assertEqual(sum(i["messages"] for i in intervals), end["messages"])

    @checks("upper_client.py", "upper-client-commands")
    def test_upperClientCommandsAgainstUpperEcho(self) -> None:
        """
        The docs' two commands (on a free port): the C{UpperEcho} server, and
        the C{UpperClient} against it, which prints the shouted echo and
        exits 0; the plain client fails there, with the docs' line.
        """
        code = exampleCode("upper_client.py")
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        serve, client = twistCommands("upper-client-commands")
        port = self.serve(*withoutOption(serve, "--port")[2:])
        done = self.runTwist(withOption(client, "--port", str(port), "tcpclient"))
        self.assertEqual((done.returncode, done.stdout), (0, "QUIET PLEASE\n"), done.stderr)
        plain, _ = runClient("--port", str(port), "-m", "quiet please", env=self.env)
        self.assertEqual(plain.returncode, 65)
        self.assertEqual(
            verdict(plain), ["tcpclient: echo differs at offset 0: expected 0x71 'q', got 0x51 'Q'"]
        )

    def echoOnce(self, port: int) -> subprocess.CompletedProcess[str]:
        """
        Run the docs' C{echo_once.py} against the server on C{port}.
        """
        return subprocess.run(
            [sys.executable, "echo_once.py", f"tcp:127.0.0.1:{port}"],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )

    @checks("echo_once.py")
    def test_libraryExampleEchoesOnce(self) -> None:
        """
        The docs' C{echo_once.py}, given a server's endpoint, prints the
        outcome and exits 0.
        """
        done = self.echoOnce(self.serve())
        self.assertEqual((done.returncode, done.stdout), (0, "all 6 bytes came back identical\n"))

    @checks("echo_once.py")
    def test_libraryExampleExitsNonZeroWhenTheEchoDiffers(self) -> None:
        """
        The docs' C{echo_once.py}, against a server that changes a byte of
        the echo, prints where the echo differs and exits 1.
        """
        self.env["PYTHONPATH"] += os.pathsep + str(ROOT)
        done = self.echoOnce(self.serve("--protocol", "tests.servers.Corrupting"))
        self.assertEqual(
            (done.returncode, done.stdout),
            (1, "echo differs at offset 5: expected 0x0a, got 0xf5\n"),
            done.stderr,
        )


class FaultExampleTests(SynchronousTestCase):
    """
    The faults page's examples and samples are what twist does.
    """

    @checks("fault-commands")
    def test_theFullQueueCommandLetsFiveConnectAndTheSixthHang(self) -> None:
        """
        The never-accept example, run on a free port, lets five clients
        connect (its backlog, 4, plus one) and the sixth hang.
        """
        [words] = [c for c in twistCommands("fault-commands") if "never-accept" in c]
        words = withOption(words, "--port", "0", "tcpecho")
        server, port = startTcpecho(self, *words[words.index("tcpecho") + 1 :])
        for _ in range(5):
            queued = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            self.addCleanup(queued.close)
        with socket.socket() as sixth:
            sixth.settimeout(1.0)
            with self.assertRaises(TimeoutError):
                sixth.connect(("127.0.0.1", port))
        self.assertEqual(server.of(lifecycle="accept"), [])

    @checks("fault-error")
    def test_aBadSpecIsTheLineShownAndStatus64(self) -> None:
        """
        The bad spec shown is refused with the line shown, and status 64.
        """
        line = exampleCode("fault-error").strip()
        spec = line.split("'")[1]
        result = runTwist("tcpecho", "--port", "0", "--fault", spec)
        self.assertEqual(result.returncode, 64, result.stderr)
        self.assertEqual(result.stderr.splitlines()[0], line)

    def reflectingServer(self) -> int:
        """
        The session's server (on a free port, on loopback).
        """
        [command, _] = session("reflect-session")
        words = twistWords(command[0])
        assert words is not None
        words = withOption(words, "--port", "0", "tcpecho")
        _, port = startTcpecho(self, *words[words.index("tcpecho") + 1 :])
        return port

    @checks("reflect-session")
    def test_reflectSessionPrintsTheLineThenTheEcho(self) -> None:
        """
        Against the session's server, the session's client gets the line
        shown (with its own port and the server's) and then the echo.
        """
        port = self.reflectingServer()
        [_, (client, printed)] = session("reflect-session")
        request = shellWords(client)[1].encode().decode("unicode_escape").encode()
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as connection:
            connection.sendall(request)
            connection.shutdown(socket.SHUT_WR)
            own = connection.getsockname()[1]
            received = recvUntilEOF(connection).decode().splitlines()
        expected = [
            line.replace("127.0.0.1:51234", f"127.0.0.1:{own}").replace(":9001", f":{port}")
            for line in printed
        ]
        self.assertEqual(received, expected)

    @checks("tcpclient-reflect")
    def test_tcpclientReflectSaysWhatIsShown(self) -> None:
        """
        Against the session's server, the client command shown ends with
        the line shown (with its own port and the server's).
        """
        port = self.reflectingServer()
        [(command, [expected])] = session("tcpclient-reflect")
        words = twistWords(command)
        assert words is not None
        words = withOption(words, "--port", str(port), "tcpclient")
        done = subprocess.run(
            [str(BIN / "twist"), *words[1:]],
            capture_output=True,
            text=True,
            timeout=WAIT,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual((done.returncode, done.stdout), (0, "hello\n"), done.stderr)
        shape = re.escape(expected).replace("51234", r"\d+").replace("9001", str(port))
        self.assertRegex(done.stderr.splitlines()[-1], f"^{shape}$")


class DeploymentExampleTests(SynchronousTestCase):
    """
    The systemd and many-core examples name what the project ships, and run.
    """

    @checks("systemd-install")
    def test_installCommandsCopyUnitsThatShipAndEnableThem(self) -> None:
        """
        Every file the install example copies is in C{contrib/}, every unit
        it enables is one of those (or an instance of its template), and
        the twist it installs is the one the service runs.
        """
        copied: set[str] = set()
        enabled: list[str] = []
        for name in ("systemd-install",):
            for line in logicalLines(exampleCode(name)):
                for command in " ".join(shellWords(line)).split(" && "):
                    words = command.split()
                    if words[0] == "cp":
                        copied.update(Path(w).name for w in words[1:-1])
                        for source in words[1:-1]:
                            self.assertTrue((ROOT / source).is_file(), source)
                    elif words[:2] == ["systemctl", "enable"]:
                        enabled.extend(w for w in words[2:] if not w.startswith("-"))
        self.assertTrue(enabled)
        for unit in enabled:
            template = re.sub(r"@[^.]+", "@", unit)
            self.assertIn(template if "." in template else template + ".service", copied)
        service = (ROOT / "contrib" / "tcpecho.service").read_text(encoding="utf-8")
        self.assertIn(f"ExecStart={exampleCode('systemd-execstart').strip()}\n", service)
        self.assertIn("/opt/tcplife/bin/twist --help", exampleCode("systemd-install"))

    @checks("systemd-execstart", "systemd-socket-activate")
    def test_socketActivationByHandServesThroughTheInheritedSocket(self) -> None:
        """
        The by-hand activation command, on a free port, starts tcpecho on
        the first connection and echoes it through the inherited socket;
        its listen command is the service's, but for the socket's index.
        """
        from .test_systemd import launcherListening, tool

        [line] = logicalLines(exampleCode("systemd-socket-activate"))
        words = shellWords(line)
        at = next(i for i, w in enumerate(words) if Path(w).name == "twist")
        port = freePort()
        launcher = [
            tool(words[0]),
            *(w.replace("127.0.0.1:9000", f"127.0.0.1:{port}") for w in words[1:at]),
        ]
        server = TwistProcess(*words[at + 1 :], launcher=launcher)
        self.addCleanup(server.kill)
        launcherListening(server)
        self.assertEqual(echoWithHalfClose(port, b"activated\n"), b"activated\n")
        self.assertEqual(portOf(server.waitFor(lifecycle="listen")["address"]), port)
        listen = words[words.index("--listen") + 1]
        execStart = exampleCode("systemd-execstart").split()
        self.assertEqual(
            listen.replace("index=0", "name=tcpecho"), execStart[execStart.index("--listen") + 1]
        )

    @checks("reuse-port-loop")
    def test_reusePortProcessesShareOnePort(self) -> None:
        """
        Two of the loop's processes, on one free port (their logs on
        standard output here, not in files), both listen there and serve.
        """
        [words] = twistCommands("reuse-port-loop")
        port = freePort()
        command = withoutOption(withOption(words, "--port", str(port), "tcpecho"), "--log-file")
        self.assertEqual(command[1:3], ["--log-format", "json"])
        for _ in range(2):
            server = TwistProcess(*command[3:], "--interface", "127.0.0.1")
            self.addCleanup(server.kill)
            self.assertEqual(portOf(server.waitFor(lifecycle="listen")["address"]), port)
        self.assertEqual(echoWithHalfClose(port, b"shared\n"), b"shared\n")
