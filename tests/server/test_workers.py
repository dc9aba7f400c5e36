"""
The supervisor's pool of workers on a memory reactor: what it starts them
with, how it restarts them, when it gives up, how it drains them.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tcplife.server import FIRST_INHERITED, Worker, WorkerPool, connectionNumbering


class FakeProcess:
    """
    The transport of a spawned process, as far as the pool uses it.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str | int] = []

    def signalProcess(self, name: str | int) -> None:
        self.signals.append(name)


class ProcessReactor(MemoryReactorClock):
    """
    A memory reactor that records the processes it is asked to spawn and
    connects each control channel to a StringTransport.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []
        self.channels: list[StringTransport] = []

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], env: Any, childFDs: Any
    ) -> FakeProcess:
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append(
            {"protocol": protocol, "args": args, "childFDs": childFDs, "process": process}
        )
        return process

    def adoptStreamConnection(self, fd: int, family: Any, factory: Any) -> None:
        transport = StringTransport()
        factory.buildProtocol(None).makeConnection(transport)
        self.channels.append(transport)


def killed(signum: int = signal.SIGKILL) -> Failure:
    return Failure(ProcessTerminated(signal=signum))


class PoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        self.gaveUp: list[str] = []
        self.pool = WorkerPool(
            2,
            self.reactor,
            lambda worker: ["twist", f"--worker-of={worker.index}/2/{worker.generation}"],
            self.gaveUp.append,
            environ={"HOME": "/"},
            drainBudget=20.0,
        )
        self.pool.start([7, 9])

    def die(self, index: int, reason: Failure | None = None) -> None:
        worker = self.pool.workers[index - 1]
        spawn = [s for s in self.reactor.spawned if s["process"] is worker.process][-1]
        spawn["protocol"].processEnded(reason or killed())

    def test_workersGetTheListeningSocketsFromThreeAndAControlChannel(self) -> None:
        """
        Each worker is started with its command, the listening sockets as
        descriptors 3 and 4 (systemd's numbering), its control channel as
        standard input, and the supervisor's standard output and error.
        """
        self.assertEqual(
            [s["args"] for s in self.reactor.spawned],
            [["twist", "--worker-of=1/2/0"], ["twist", "--worker-of=2/2/0"]],
        )
        for spawn in self.reactor.spawned:
            fds = spawn["childFDs"]
            self.assertEqual(
                (fds[1], fds[2], fds[FIRST_INHERITED], fds[FIRST_INHERITED + 1]), (1, 2, 7, 9)
            )
            self.assertIsInstance(fds[0], int)
        self.assertEqual([w.pid for w in self.pool.workers], [1000, 1001])

    def test_aDeadWorkerIsRestartedAfterABackOffThatDoubles(self) -> None:
        """
        A worker that keeps dying at once is restarted after 0.1, 0.2 and
        0.4 s, each time in its next generation.
        """
        for delay, generation in ((0.1, 1), (0.2, 2), (0.4, 3)):
            self.die(1)
            self.reactor.advance(delay - 0.01)
            self.assertIsNone(self.pool.workers[0].process)
            self.reactor.advance(0.01)
            self.assertEqual(self.reactor.spawned[-1]["args"][-1], f"--worker-of=1/2/{generation}")
        self.assertEqual(self.gaveUp, [])

    def test_aWorkerThatLivedLongIsRestartedAtOnceAgain(self) -> None:
        """
        After a life of 10 s or more, the back-off starts again at 0.1 s.
        """
        self.die(1)
        self.reactor.advance(0.1)
        self.die(1)
        self.reactor.advance(0.2)
        self.reactor.advance(10)
        self.die(1)
        self.reactor.advance(0.09)
        self.assertIsNone(self.pool.workers[0].process)
        self.reactor.advance(0.01)
        self.assertEqual(self.reactor.spawned[-1]["args"][-1], "--worker-of=1/2/3")

    def test_fiveDeathsInTenSecondsGiveUp(self) -> None:
        """
        The fifth death within 10 s (of any worker) gives up, in one line
        that says how often, which worker died last and how; nothing more is
        restarted.
        """
        for index in (1, 2, 1, 2):
            self.die(index)
            self.reactor.advance(1)
        spawned = len(self.reactor.spawned)
        self.die(1, killed(signal.SIGSEGV))
        self.assertEqual(
            self.gaveUp,
            [
                "workers died 5 times in 10 s (the last, worker 1 (pid 1004), was killed by "
                "SIGSEGV); not restarting them again"
            ],
        )
        self.reactor.advance(10)
        self.assertEqual(len(self.reactor.spawned), spawned)

    def test_deathsOlderThanTheWindowDoNotCount(self) -> None:
        """
        Four deaths, then a quiet 10 s, then a fifth: no giving up.
        """
        for index in (1, 2, 1, 2):
            self.die(index)
            self.reactor.advance(1)
        self.reactor.advance(10)
        self.die(1)
        self.assertEqual(self.gaveUp, [])

    def test_aWorkerThatDrainedOnItsOwnSignalIsStartedAgainUncounted(self) -> None:
        """
        A worker that exits cleanly (status 0, or of SIGTERM, SIGINT or
        SIGHUP: told to stop by someone else) once it has answered the pool
        is started again at once, and such exits never make the pool give
        up.
        """
        for generation in range(1, 8):
            worker = self.pool.workers[0]
            self.pool._heard({"open": 0, "accepted": 0}, worker, worker.pid)
            self.die(1, killed(signal.SIGTERM) if generation % 2 else Failure(ProcessDone(0)))
            self.reactor.advance(0)
            self.assertEqual(self.reactor.spawned[-1]["args"][-1], f"--worker-of=1/2/{generation}")
        self.assertEqual((self.gaveUp, list(self.pool.deaths)), ([], []))

    def test_aWorkerThatExitsCleanlyBeforeItsFirstAnswerIsADeath(self) -> None:
        """
        A worker that exits with status 0 before it ever answered the pool
        (it could not start) is restarted after the back-off and counted,
        so that the pool gives up on it in the end.
        """
        for _ in range(5):
            self.die(1, Failure(ProcessDone(0)))
            self.reactor.advance(1)
        self.assertEqual(len(self.gaveUp), 1)
        self.assertIn("exited with status 0", self.gaveUp[0])

    def test_aSignalPassedOnWaitsForAWorkersFirstAnswer(self) -> None:
        """
        SIGUSR1 passed on reaches each worker that has answered the pool,
        and one still starting (its handler perhaps not set: the signal
        would kill it) once it first answers, once.
        """
        first, second = self.pool.workers
        self.pool._heard({"open": 0, "accepted": 0}, first, first.pid)
        self.pool.signalAll(signal.SIGUSR1)
        self.pool.signalAll(signal.SIGUSR1)
        processes = [spawn["process"] for spawn in self.reactor.spawned]
        self.assertEqual([p.signals for p in processes], [[signal.SIGUSR1] * 2, []])
        self.pool._heard({"open": 0, "accepted": 0}, second, second.pid)
        self.pool._heard({"open": 0, "accepted": 0}, second, second.pid)
        self.assertEqual(processes[1].signals, [signal.SIGUSR1])

    def test_drainTellsEveryWorkerAndFiresOnceAllHaveExited(self) -> None:
        """
        A drain sends each worker a Drain over its channel, restarts
        nothing, and fires once both have exited.
        """
        drained = self.pool.drain()
        for channel in self.reactor.channels:
            self.assertIn(b"Drain", channel.value())
        self.die(1, Failure(ProcessDone(0)))
        self.assertNoResult(drained)
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.die(2, Failure(ProcessDone(0)))
        self.successResultOf(drained)

    def test_aWorkerNotDrainedInItsBudgetIsKilled(self) -> None:
        """
        One still running when the drain's budget is spent is sent SIGKILL.
        """
        self.pool.drain()
        self.die(1, Failure(ProcessDone(0)))
        second = self.pool.workers[1].process
        self.reactor.advance(20)
        self.assertEqual(second.signals, ["KILL"])  # type: ignore[union-attr]

    def test_aRestartDueWhenTheDrainBeginsNeverHappens(self) -> None:
        """
        A worker waiting out its back-off when the drain begins is not
        started again, and the drain does not wait for it.
        """
        self.die(1)
        drained = self.pool.drain()
        self.die(2, Failure(ProcessDone(0)))
        self.successResultOf(drained)
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_endNowTellsEveryRunningWorker(self) -> None:
        """
        endNow (a second signal) sends each worker an EndNow with the
        reason.
        """
        self.pool.drain()
        self.pool.endNow("second SIGTERM")
        for channel in self.reactor.channels:
            self.assertIn(b"second SIGTERM", channel.value())


class ConnectionNumberingTests(SynchronousTestCase):
    def test_idsNeverMeetAcrossWorkersAndRestarts(self) -> None:
        """
        Three workers, each in three generations, numbering a thousand
        connections each: no id twice, and generation 0's are small.
        """
        ids = []
        for index in (1, 2, 3):
            for generation in (0, 1, 2):
                first, step = connectionNumbering(index, 3, generation)
                ids.extend(range(first, first + 1000 * step, step))
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual(connectionNumbering(2, 3, 0), (2, 3))
        self.assertEqual(connectionNumbering(1, 3, 1), (10**12 + 1, 3))


class WorkerTests(SynchronousTestCase):
    def test_aWorkerBetweenProcessesIsNotRunning(self) -> None:
        """
        A worker's place without a process is not running.
        """
        self.assertFalse(Worker(1).running)
