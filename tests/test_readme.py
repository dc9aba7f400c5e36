"""
The README's examples run as written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from .helpers import TwistProcess, echoWithHalfClose

README = Path(__file__).parent.parent / "README.md"


def exampleCode(name: str) -> str:
    """
    The fenced Python block that follows C{<!-- example: name -->}.
    """
    text = README.read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.DOTALL
    )
    assert match is not None, f"README has no example named {name}"
    return match.group(1)


class UpperEchoExampleTests(SynchronousTestCase):
    """
    The README's subclass example serves as documented.
    """

    def test_upperEchoServedByTwistWithLifecycleEvents(self) -> None:
        """
        The README's C{UpperEcho}, saved as C{upper_echo.py} and served with
        C{twist tcpecho --protocol upper_echo.UpperEcho}, shouts the echo back
        and still logs accept, half-close and close.
        """
        code = exampleCode("upper_echo.py")
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "upper_echo.py").write_text(code, encoding="utf-8")
        env = dict(os.environ, PYTHONPATH=str(directory))
        server = TwistProcess(
            "tcpecho",
            "--protocol",
            "upper_echo.UpperEcho",
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
            env=env,
        )
        self.addCleanup(server.kill)
        port = int(server.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1])
        self.assertEqual(echoWithHalfClose(port, b"quiet please\n"), b"QUIET PLEASE\n")
        close = server.waitFor(lifecycle="close")
        self.assertEqual((close["how"], close["bytes_out"]), ("fin", 13))
        accepted = server.waitFor(lifecycle="accept")
        self.assertEqual(accepted["conn_id"], close["conn_id"])
        server.waitFor(lifecycle="half-close", conn_id=close["conn_id"])
