"""
Run C{twist tcpclient} against an echo server in a network namespace of its
own whose local port range holds only a few ports, as a long connection
churn on a real network ends up: every port the client closed waits in
TIME_WAIT.

Run under C{unshare -n}, from the project's root:

    unshare -n python -m tests.netns SERVER PORTS CLIENT-ARGUMENTS...

SERVER is C{tcpecho} or C{asyncio}; it listens on 127.0.0.1:9000 (outside
the port range).  Prints one JSON object: the client's exit status, standard
output and standard error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import TwistProcess
from .servers import AsyncioEchoServer, runClient

PORT = 9000
FIRST_LOCAL_PORT = 40000


def main(argv: list[str]) -> int:
    server, ports, clientArguments = argv[0], int(argv[1]), argv[2:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ipv4 = Path("/proc/sys/net/ipv4")
    # Both namespaced: the host's own settings are untouched.
    (ipv4 / "ip_local_port_range").write_text(
        f"{FIRST_LOCAL_PORT} {FIRST_LOCAL_PORT + ports - 1}\n"
    )
    # Loopback may otherwise reuse a TIME_WAIT port for a new connection.
    (ipv4 / "tcp_tw_reuse").write_text("0\n")
    running: TwistProcess | AsyncioEchoServer
    if server == "tcpecho":
        running = TwistProcess("tcpecho", "--port", str(PORT), "--interface", "127.0.0.1")
        running.waitFor(lifecycle="listen")
    else:
        running = AsyncioEchoServer(port=PORT)
    try:
        done, _ = runClient("--port", str(PORT), *clientArguments)
    finally:
        if isinstance(running, TwistProcess):
            running.kill()
        else:
            running.stop()
    print(
        json.dumps(
            {
                "status": done.returncode,
                "stdout": done.stdout.decode("utf-8", "replace"),
                "stderr": done.stderr.decode("utf-8", "replace"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
