"""
C{twist tcpecho --workers N}: a supervisor and N worker processes serving
the listening sockets it bound, as a user runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from ..helpers import (
    WAIT,
    TwistProcess,
    echoWithHalfClose,
    portOf,
    recvExactly,
    recvUntilEOF,
    recvUntilEOFOrReset,
    startTcpecho,
    unixEcho,
)
from ..servers import temporaryDirectory, waitForCount
from .test_events import eventLines
from .test_metrics import scrape

SIGTERM_STATUS = (-signal.SIGTERM, 128 + signal.SIGTERM)


def startWorkers(
    test: SynchronousTestCase, count: int, *args: str, **kwargs: Any
) -> tuple[TwistProcess, int]:
    """
    C{twist tcpecho --workers COUNT ARGS} on 127.0.0.1, port 0 (C{kwargs}
    for L{TwistProcess}); returns once every worker listens.
    """
    server, port = startTcpecho(test, "--workers", str(count), *args, **kwargs)
    for index in range(1, count + 1):
        server.waitFor(lifecycle="listen", worker=index)
    return server, port


def connected(test: SynchronousTestCase, port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    test.addCleanup(client.close)
    return client


def servedBy(server: TwistProcess, client: socket.socket) -> dict[str, Any]:
    """
    The C{accept} event of C{client}'s connection: which worker holds it.
    """
    peer = f"127.0.0.1:{client.getsockname()[1]}"
    return server.waitFor(lifecycle="accept", peer=peer)


def echoOnce(client: socket.socket, payload: bytes) -> bytes:
    client.sendall(payload)
    return recvExactly(client, len(payload))


class QueuedClientsTests(SynchronousTestCase):
    """
    A worker that dies takes only the connections it had accepted: the
    clients waiting in the kernel's queue are another worker's to serve.
    """

    def test_killedWorkersHeldClientsEndAndQueuedClientsAreServed(self) -> None:
        """
        Two workers capped at two connections each hold four clients, and
        three more wait in the queue with their requests sent; kill -9 one
        worker: its two clients are cut off, the other worker's two still
        echo, and each of the three queued clients gets its whole echo from
        the restarted worker.
        """
        server, port = startWorkers(self, 2, "--max-connections", "2")
        held = [connected(self, port) for _ in range(4)]
        for n, client in enumerate(held):
            self.assertEqual(echoOnce(client, b"held %d" % n), b"held %d" % n)
        for index in (1, 2):
            server.waitFor(lifecycle="accept-paused", worker=index)
        queued = [connected(self, port) for _ in range(3)]
        for n, client in enumerate(queued):
            client.sendall(b"queued %d " % n * 1000)
            client.shutdown(socket.SHUT_WR)

        byWorker = {
            index: [c for c in held if servedBy(server, c)["worker"] == index] for index in (1, 2)
        }
        self.assertEqual([len(clients) for clients in byWorker.values()], [2, 2])
        victim = servedBy(server, byWorker[1][0])["pid"]
        os.kill(victim, signal.SIGKILL)

        for client in byWorker[1]:
            self.assertEqual(recvUntilEOFOrReset(client), b"")
        for n, client in enumerate(queued):
            self.assertEqual(recvUntilEOF(client), b"queued %d " % n * 1000)
        for client in byWorker[2]:
            self.assertEqual(echoOnce(client, b"still here"), b"still here")
        died = server.waitFor(supervisor="worker-died", worker=1)
        self.assertEqual(died["pid"], victim)
        restarted = server.waitFor(supervisor="worker-started", worker=1, generation=1)
        served = [servedBy(server, client) for client in queued]
        self.assertEqual({accept["pid"] for accept in served}, {restarted["pid"]})


class QueueModelTests(SynchronousTestCase):
    """
    The kernel's two ways for processes to share a port, measured as the
    workers would meet them: the reason --workers shares one socket.
    """

    def queuedThenOneListenerCloses(self, reusePort: bool) -> tuple[int, int]:
        """
        Two listening descriptors (two sockets with SO_REUSEPORT, or one
        socket held twice), 40 connected clients nobody accepts, and one
        descriptor closed as a dying process closes it: how many clients
        were reset, and how many the other descriptor then accepts.
        """
        first = socket.socket()
        self.addCleanup(first.close)
        if reusePort:
            first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.bind(("127.0.0.1", 0))
        first.listen(128)
        port = first.getsockname()[1]
        if reusePort:
            second = socket.socket()
            second.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            second.bind(("127.0.0.1", port))
            second.listen(128)
        else:
            second = first.dup()
        self.addCleanup(second.close)
        clients = [connected(self, port) for _ in range(40)]
        for client in clients:
            client.sendall(b"waiting")
        first.close()
        # The kernel resets at once whatever it resets (no data is due).
        reset = 0
        for client in clients:
            client.setblocking(False)
            try:
                client.recv(1)
            except ConnectionResetError:
                reset += 1
            except BlockingIOError:
                pass
        second.setblocking(False)
        accepted = 0
        while True:
            try:
                served, _ = second.accept()
            except BlockingIOError:
                break
            self.addCleanup(served.close)
            accepted += 1
        return reset, accepted

    def test_reusePortResetsTheClosedListenersQueue(self) -> None:
        """
        With SO_REUSEPORT each socket has its own queue: closing one resets
        the clients the kernel had put in it, and the other never sees them.
        """
        reset, accepted = self.queuedThenOneListenerCloses(reusePort=True)
        self.assertGreater(reset, 0)
        self.assertEqual(reset + accepted, 40)

    def test_oneSharedSocketKeepsItsQueueForTheOtherHolder(self) -> None:
        """
        With one socket held twice there is one queue: closing one
        descriptor resets nobody, and the other accepts all 40.
        """
        self.assertEqual(self.queuedThenOneListenerCloses(reusePort=False), (0, 40))


class SupervisorTests(SynchronousTestCase):
    """
    The supervisor starts, restarts, drains and stops its workers.
    """

    def test_everyListenerIsServedAndEveryEventSaysWhoseItIs(self) -> None:
        """
        Both the --port and a --listen unix: socket are served; every event
        carries worker and pid (the supervisor's own are worker 0, its
        workers' start and end are logged with theirs); conn_ids are
        unique across workers.
        """
        path = str(temporaryDirectory(self) / "echo.sock")
        server, port = startWorkers(self, 2, "--listen", f"unix:{path}")
        for n in range(6):
            self.assertEqual(echoWithHalfClose(port, b"tcp %d" % n), b"tcp %d" % n)
            self.assertEqual(unixEcho(path, b"unix %d" % n), b"unix %d" % n)
        waitForCount(server, 12, lifecycle="close")
        self.assertIn(server.signal(signal.SIGTERM), SIGTERM_STATUS)

        self.assertEqual([e for e in server.events if "worker" not in e or "pid" not in e], [])
        supervisorPid = server.process.pid
        started = server.of(supervisor="worker-started")
        workerPids = {event["worker"]: event["pid"] for event in started}
        self.assertEqual(sorted(workerPids), [1, 2])
        for event in server.events:
            if event["pid"] == supervisorPid:
                self.assertIn(event["worker"], (0, *([1, 2] if "supervisor" in event else [])))
            else:
                self.assertEqual(workerPids[event["worker"]], event["pid"])
        accepts = server.of(lifecycle="accept")
        ids = [accept["conn_id"] for accept in accepts]
        self.assertEqual(len(set(ids)), 12)
        for accept in accepts:
            self.assertEqual(accept["conn_id"] % 2, accept["worker"] % 2)
        exited = server.of(supervisor="worker-exited")
        self.assertEqual(sorted(event["worker"] for event in exited), [1, 2])
        self.assertEqual(
            sorted(e["worker"] for e in server.of(lifecycle="stop-listening")), [0, 0, 1, 1, 2, 2]
        )

    def test_deadWorkersAreRestartedWithBackOffUntilTheSupervisorGivesUp(self) -> None:
        """
        A worker killed again and again is restarted after 0.1, 0.2, 0.4
        and 0.8 s; at the fifth death in 10 s the supervisor stops with one
        line on standard error and status 1, draining the other worker.
        """
        server, _port = startWorkers(self, 2)
        for generation in range(5):
            started = server.waitFor(supervisor="worker-started", worker=1, generation=generation)
            server.waitFor(lifecycle="listen", pid=started["pid"])
            os.kill(started["pid"], signal.SIGKILL)
            server.waitFor(
                pid=started["pid"],
                worker=1,
                supervisor="gave-up" if generation == 4 else "worker-died",
            )
        delays = [event["restart_in_s"] for event in server.of(supervisor="worker-died")]
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8])
        self.assertEqual(server.finish(), 1)
        lines = server.stderr_text().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(
            lines[0],
            r"^tcplife: workers died 5 times in 10 s \(the last, worker 1 \(pid \d+\), was "
            r"killed by SIGKILL\); not restarting them again$",
        )
        server.waitFor(lifecycle="drained", worker=2)

    def test_sigtermDrainsEveryWorkerAndExitsAsTwistDoes(self) -> None:
        """
        On SIGTERM the supervisor stops listening, passes the drain on to
        each worker, and exits with twist's status (143) once both have
        drained, an open client having had its echo in full meanwhile.
        """
        server, port = startWorkers(self, 2)
        client = connected(self, port)
        self.assertEqual(echoOnce(client, b"before "), b"before ")
        holder = servedBy(server, client)["worker"]

        server.process.send_signal(signal.SIGTERM)
        for index in (1, 2):
            server.waitFor(lifecycle="drain", worker=index)
        self.assertEqual(server.waitFor(lifecycle="drain", worker=holder)["open"], 1)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        client.sendall(b"after" * 10_000)
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(client), b"after" * 10_000)
        drained = server.waitFor(lifecycle="drained", worker=holder)
        self.assertEqual((drained["ended_by_peer"], drained["aborted"]), (1, 0))
        self.assertIn(server.finish(), SIGTERM_STATUS)
        self.assertEqual(len(server.of(supervisor="worker-exited")), 2)
        self.assertEqual([e for e in server.events if "log_failure" in e], [])

    def test_sigintAndSighupDrainToo(self) -> None:
        """
        SIGINT and SIGHUP drain every worker as SIGTERM does, and the
        supervisor exits with the status twist gives each (130, 129).
        """
        for signum in (signal.SIGINT, signal.SIGHUP):
            server, port = startWorkers(self, 2)
            self.assertEqual(echoWithHalfClose(port, b"up"), b"up")
            server.process.send_signal(signum)
            for index in (1, 2):
                server.waitFor(lifecycle="drained", worker=index)
            self.assertIn(server.finish(), (-signum, 128 + signum))

    def test_sigtermToOneWorkerDrainsItAndItIsStartedAgainAtOnce(self) -> None:
        """
        SIGTERM to one serving worker alone drains it (its open client has
        its echo in full) and the supervisor starts it again at once, with
        no death counted, while the other worker serves on.
        """
        server, port = startWorkers(self, 2)
        client = connected(self, port)
        self.assertEqual(echoOnce(client, b"before "), b"before ")
        holder = servedBy(server, client)
        server.waitFor(supervisor="worker-serving", pid=holder["pid"])
        os.kill(holder["pid"], signal.SIGTERM)
        server.waitFor(lifecycle="drain", pid=holder["pid"])
        client.sendall(b"after" * 10_000)
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(client), b"after" * 10_000)
        stopped = server.waitFor(supervisor="worker-stopped", worker=holder["worker"])
        self.assertEqual(stopped["pid"], holder["pid"])
        again = server.waitFor(supervisor="worker-started", worker=holder["worker"], generation=1)
        server.waitFor(lifecycle="listen", pid=again["pid"])
        for n in range(4):
            self.assertEqual(echoWithHalfClose(port, b"%d" % n), b"%d" % n)
        self.assertEqual(server.of(supervisor="worker-died"), [])

    def test_ctrlCToTheWholeGroupDrainsEveryWorkerOnce(self) -> None:
        """
        SIGINT to the supervisor's whole process group, as a terminal's
        Ctrl-C sends it, reaches the supervisor alone (each worker is a
        group of its own): every worker drains once, as the supervisor
        passes it on, never taking its own copy for a second signal, and an
        open client has its echo in full.
        """
        server, port = startWorkers(self, 2, preexec_fn=os.setsid)
        client = connected(self, port)
        self.assertEqual(echoOnce(client, b"before "), b"before ")
        os.killpg(server.process.pid, signal.SIGINT)
        for index in (1, 2):
            server.waitFor(lifecycle="drain", worker=index)
        client.sendall(b"after" * 10_000)
        client.shutdown(socket.SHUT_WR)
        self.assertEqual(recvUntilEOF(client), b"after" * 10_000)
        self.assertIn(server.finish(), (-signal.SIGINT, 128 + signal.SIGINT))
        received = [e["worker"] for e in server.of(log_format="Received SIGINT, shutting down.")]
        passed = server.of(log_format="the supervisor passes {signal} on: shutting down")
        self.assertEqual((received, sorted(e["worker"] for e in passed)), ([0], [1, 2]))
        self.assertEqual(server.of(lifecycle="drain-abort"), [])

    def test_secondSigtermAbortsEveryWorkersDrain(self) -> None:
        """
        A second SIGTERM during a long drain aborts the open connections of
        every worker at once.
        """
        server, port = startWorkers(self, 2, "--max-connections", "1", "--shutdown-timeout", "600")
        clients = [connected(self, port) for _ in range(2)]
        for client in clients:
            self.assertEqual(echoOnce(client, b"x"), b"x")
        server.process.send_signal(signal.SIGTERM)
        for index in (1, 2):
            server.waitFor(lifecycle="drain", worker=index)
        server.process.send_signal(signal.SIGTERM)
        for index in (1, 2):
            abort = server.waitFor(lifecycle="drain-abort", worker=index)
            self.assertEqual((abort["open"], abort["reason"]), (1, "second SIGTERM"))
        self.assertIn(server.finish(), SIGTERM_STATUS)

    def test_workersDrainWhenTheSupervisorIsGone(self) -> None:
        """
        Killing the supervisor leaves no worker serving on: each sees its
        control channel close, drains, and exits.
        """
        server, _port = startWorkers(self, 2)
        pids = [event["pid"] for event in server.of(supervisor="worker-started")]
        server.process.kill()
        for index in (1, 2):
            server.waitFor(lifecycle="drained", worker=index)
        deadline = time.monotonic() + WAIT
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            server.poll(0.1)
        self.assertEqual([pid for pid in pids if _alive(pid)], [])


class EventsFileTests(SynchronousTestCase):
    """
    C{--events PATH} with C{--workers}: one file for the supervisor and
    every worker, each line saying whose it is.
    """

    def test_everyWorkerWritesTheOneFileAndReopensItOnTheSupervisorsSigusr1(self) -> None:
        """
        Two workers capped at one connection each serve a client apiece,
        and both write their events to the one file, as the supervisor
        does its own (worker 0), every line with its worker and pid and
        every conn_id unique; after a rename and SIGUSR1 to the supervisor,
        every worker writes to the new file, where both drains end.
        """
        directory = temporaryDirectory(self)
        path = directory / "events.jsonl"
        server, port = startWorkers(self, 2, "--max-connections", "1", "--events", str(path))
        pids = {e["worker"]: e["pid"] for e in server.of(supervisor="worker-started")}
        pids[0] = server.process.pid
        before = [connected(self, port) for _ in range(2)]
        for n, client in enumerate(before):
            self.assertEqual(echoOnce(client, b"before %d" % n), b"before %d" % n)
        for client in before:
            client.close()

        path.rename(directory / "events.jsonl.1")
        server.process.send_signal(signal.SIGUSR1)
        for index in (0, 1, 2):
            server.waitFor(events_file=str(path), worker=index, log_format=REOPENED)
        after = [connected(self, port) for _ in range(2)]
        for n, client in enumerate(after):
            self.assertEqual(echoOnce(client, b"after %d" % n), b"after %d" % n)
        for client in after:
            client.close()
        self.assertIn(server.signal(signal.SIGTERM), SIGTERM_STATUS)

        old, new = eventLines(directory / "events.jsonl.1"), eventLines(path)
        for line in old + new:
            self.assertEqual(list(line)[:4], ["time", "level", "worker", "pid"])
            self.assertEqual(pids[line["worker"]], line["pid"])
        for lines in (old, new):
            accepts = [line for line in lines if line["lifecycle"] == "accept"]
            self.assertEqual(sorted(line["worker"] for line in accepts), [1, 2])
        self.assertEqual(
            sorted((line["worker"], line["lifecycle"]) for line in old if line["worker"] == 0),
            [(0, "listen")],
        )
        self.assertEqual(
            sorted(line["worker"] for line in new if line["lifecycle"] == "drained"), [1, 2]
        )
        ids = [line["conn_id"] for line in old + new if line["lifecycle"] == "accept"]
        self.assertEqual(len(set(ids)), 4)


#: The log line of an events file reopened.
REOPENED = "events file {events_file} reopened"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class MetricsTests(SynchronousTestCase):
    """
    One /metrics for the supervisor and every worker.
    """

    def test_countersSumGaugesCombineAndTheQueueIsOne(self) -> None:
        """
        Echoes served by both workers are counted once each in all; open
        connections sum; accept_paused is 1 once any worker pauses; the
        queue depth is the one shared queue's; and a killed worker's counts
        do not fall out of the totals.
        """
        server, port = startWorkers(
            self, 2, "--max-connections", "1", "--metrics", "tcp:0:interface=127.0.0.1"
        )
        metricsPort = portOf(
            server.waitFor(description="metrics tcp:0:interface=127.0.0.1")["address"]
        )
        listener = f"127.0.0.1:{port}"
        for n in range(4):
            self.assertEqual(echoWithHalfClose(port, b"%d" % n * 5), b"%d" % n * 5)
        waitForCount(server, 4, lifecycle="close")
        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_accepted_total", ())], 4)
        self.assertEqual(samples[("tcplife_received_bytes_total", ())], 20)
        self.assertEqual(samples[("tcplife_workers", ())], 2)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 0)
        self.assertEqual(samples[("tcplife_accept_queue_backlog", (("listener", listener),))], 128)

        held = [connected(self, port) for _ in range(2)]
        for client in held:
            self.assertEqual(echoOnce(client, b"held"), b"held")
        waiting = connected(self, port)
        for index in (1, 2):
            server.waitFor(lifecycle="accept-paused", worker=index)
        samples = scrape(metricsPort)
        self.assertEqual(samples[("tcplife_connections_open", ())], 2)
        self.assertEqual(samples[("tcplife_accept_paused", ())], 1)
        self.assertEqual(samples[("tcplife_accept_queue_depth", (("listener", listener),))], 1)
        self.assertEqual(samples[("tcplife_connections_accepted_total", ())], 6)

        victim = servedBy(server, held[0])
        os.kill(victim["pid"], signal.SIGKILL)
        server.waitFor(supervisor="worker-started", worker=victim["worker"], generation=1)
        samples = scrape(metricsPort)
        self.assertGreaterEqual(samples[("tcplife_connections_accepted_total", ())], 6)
        self.assertGreaterEqual(samples[("tcplife_received_bytes_total", ())], 24)
        self.assertEqual(samples[("tcplife_worker_restarts_total", ())], 1)
        waiting.close()
