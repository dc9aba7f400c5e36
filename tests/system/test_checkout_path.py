"""
The suite passes from a checkout, or a working directory, at any path.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import WAIT
from ..servers import temporaryDirectory

PORT_TESTS = Path(__file__).parent.parent / "internet" / "test_port.py"


class CheckoutPathTests(SynchronousTestCase):
    """
    The suite passes from a checkout, or a working directory, at any path.
    """

    def test_unixSocketTestPassesFromADeepDirectory(self) -> None:
        """
        The UNIX endpoint test, run from a directory deeper than an AF_UNIX
        path may be long, binds its socket elsewhere and passes.
        """
        deep = temporaryDirectory(self) / ("d" * 100) / ("e" * 100)
        deep.mkdir(parents=True)
        test = f"{PORT_TESTS}::EndpointPortTests::test_unixEndpointUsesLifecycleUNIXPort"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            cwd=deep,
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
        )
        self.assertEqual(result.returncode, 0, result.stdout[-3000:])
