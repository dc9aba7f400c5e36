"""
The wheel carries the plugin: after a plain (not editable) install into a
fresh virtualenv, twist lists and runs tcpecho.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import WAIT, TwistProcess, echoWithHalfClose

ROOT = Path(__file__).parent.parent.parent


class WheelTests(SynchronousTestCase):
    """
    What pip installs from the wheel is enough to run the plugins.
    """

    def test_wheelInstallListsAndRunsTcpecho(self) -> None:
        """
        Build the wheel and sdist (with the systemd units), install the wheel
        into a new virtualenv, and from there twist --help lists tcpecho and
        tcpecho echoes.
        """
        work = Path(self.mktemp()).absolute()
        dist = work / "dist"
        subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        [wheel] = dist.glob("tcplife-*.whl")
        [sdist] = dist.glob("tcplife-*.tar.gz")
        listing = subprocess.run(
            ["tar", "-tzf", str(sdist)], check=True, capture_output=True, text=True
        ).stdout
        self.assertIn("twisted/plugins/tcplife_plugins.py", listing)
        self.assertIn("twisted/plugins/tcplife_reactors.py", listing)
        # The systemd units the docs tell users to copy, and the docs the
        # README links (tests/system/test_docs.py reads them).
        self.assertIn("contrib/tcpecho.socket", listing)
        self.assertIn("contrib/tcpecho.service", listing)
        for page in sorted((ROOT / "docs").glob("*.md")):
            self.assertIn(f"docs/{page.name}", listing)

        env_dir = work / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        python = env_dir / "bin" / "python"
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        plugin = subprocess.run(
            [
                str(python),
                "-c",
                "import twisted.plugins, os; print(all(os.path.exists("
                "os.path.join(twisted.plugins.__path__[0], name)) for name in "
                "('tcplife_plugins.py', 'tcplife_reactors.py')))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        self.assertEqual(plugin.stdout.strip(), "True")
        # Run from a directory without the source tree, so nothing but the
        # installed wheel can provide the plugin.
        help_text = subprocess.run(
            [str(env_dir / "bin" / "twist"), "--help"],
            capture_output=True,
            text=True,
            timeout=WAIT,
            cwd=work,
        ).stdout
        self.assertIn("tcpecho", help_text)
        # The reactor list may wrap inside the name.
        self.assertIn("tcplife-direct", "".join(help_text.split()))
        self.assertIn("tcpclient", help_text)

        server = TwistProcess(
            "--reactor",
            "tcplife-direct",
            "tcpecho",
            "--port",
            "0",
            "--interface",
            "127.0.0.1",
            cwd=str(work),
            twist=env_dir / "bin" / "twist",
        )
        self.addCleanup(server.kill)
        port = int(server.waitFor(lifecycle="listen")["address"].rsplit(":", 1)[1])
        self.assertEqual(echoWithHalfClose(port, b"from the wheel"), b"from the wheel")
        server.waitFor(lifecycle="close")

        # The client role from the same install: a one-shot echo through it.
        client = subprocess.run(
            [
                str(env_dir / "bin" / "twist"),
                "--log-file=+",
                "tcpclient",
                "--port",
                str(port),
                "--message",
                "client from the wheel",
            ],
            capture_output=True,
            timeout=WAIT,
            cwd=work,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(client.returncode, 0, client.stderr[-2000:])
        self.assertEqual(client.stdout, b"client from the wheel\n")  # --message adds the newline
