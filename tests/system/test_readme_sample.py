"""
The README's captured logs and error lines are what twist writes today.
"""

from __future__ import annotations

import json
import re
import signal
from typing import Any

from twisted.logger import eventFromJSON, formatEventAsClassicLogText
from twisted.trial.unittest import SynchronousTestCase

from ..certs import SelfSigned
from ..helpers import TwistProcess, echoWithHalfClose, runTwist, startTcpecho
from ..servers import temporaryDirectory
from .test_readme import README

#: Fields whose values depend on the run (addresses, times), not the code.
RUN_SPECIFIC = {
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


def sampleText(name: str, language: str = "") -> str:
    """
    The fenced block (of C{language}) that follows C{<!-- sample: name -->}.
    """
    text = README.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- sample: {re.escape(name)} -->\s*```{language}\n(.*?)```", text, re.DOTALL
    )
    assert match is not None, f"README has no {name} sample"
    return match.group(1)


def readmeSample() -> list[dict[str, Any]]:
    return [json.loads(line) for line in sampleText("json-log", "json").splitlines() if line]


def logShape(line: str) -> str:
    """
    A text log line without its time, and with every number (ports,
    addresses, descriptor limits, durations) as N.
    """
    return re.sub(r"\d+", "N", line.split(" ", 1)[1])


class JSONSampleTests(SynchronousTestCase):
    """
    The sample in the README's Lifecycle events section is real.
    """

    def test_sampleMatchesALiveSession(self) -> None:
        """
        The session the README describes (nc sends 'hello' and half-closes,
        then SIGTERM), run now, logs the same lifecycle records with the same
        fields and, apart from addresses and times, the same values.
        """
        sample = readmeSample()
        self.assertEqual(
            [r["lifecycle"] for r in sample],
            ["listen", "accept", "half-close", "close", "stop-listening", "drain", "drained"],
        )
        server = TwistProcess("tcpecho", "--port", "0", "--interface", "127.0.0.1")
        self.addCleanup(server.kill)
        port = int(server.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1])
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
            varying = RUN_SPECIFIC
            if "{" not in documented["log_format"]:
                varying = RUN_SPECIFIC | {"log_format"}
            self.assertEqual(
                {k: v for k, v in documented.items() if k not in varying},
                {k: v for k, v in actual.items() if k not in varying},
            )


class TextSampleTests(SynchronousTestCase):
    """
    The text samples of the README are what twist prints.
    """

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
            line for line in sampleText("quick-start-log").splitlines() if line[:1].isdigit()
        ]
        self.assertEqual(
            [logShape(line) for line in documented], [logShape(line.rstrip("\n")) for line in live]
        )

    def test_endpointErrorsAreWhatTwistSays(self) -> None:
        """
        Each endpoint error the README shows is the first line twist
        prints for that description, there and then (with a C{key.pem} that
        holds only a key in the working directory).
        """
        directory = temporaryDirectory(self)
        (directory / "key.pem").write_bytes(SelfSigned(directory / "pair").keyPEM)
        for line in sampleText("endpoint-errors").splitlines():
            description = line.split("'")[1]
            result = runTwist("tcpecho", "--listen", description, cwd=str(directory))
            self.assertEqual(result.returncode, 64, result.stderr)
            self.assertEqual(result.stderr.splitlines()[0], line)
