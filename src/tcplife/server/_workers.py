"""
Worker processes under a supervisor (C{twist tcpecho --workers N}): started
with the listening sockets the supervisor bound, restarted when they die,
drained together.

Every worker inherits the same listening sockets (descriptors 3, 4, ...,
as systemd passes them), so each socket keeps its one accept queue: a
client waiting in it when a worker dies is accepted by another worker, or
by the restarted one.  Only the connections the dead worker had accepted
die with it.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from types import FrameType
from typing import Any, Protocol, cast

import attrs
from twisted.application.internet import backoffPolicy
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import (
    IDelayedCall,
    IProcessTransport,
    IReactorCore,
    IReactorTime,
)
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._control import Drain, EndNow, Status, SupervisorControl

_log = Logger(namespace="tcplife")

#: Where a worker finds the listening sockets (systemd's SD_LISTEN_FDS_START).
FIRST_INHERITED = 3

#: A restarted worker's conn_ids start this much higher per restart of its
#: place (1,000,000,000,001 for worker 1 once restarted), so that they never
#: meet those of the process it replaces.
GENERATION_STEP = 10**12

#: A worker that lived this long before dying is restarted without delay.
STABLE_LIFE = 10.0

#: Seconds between two looks at what each worker holds.
POLL_INTERVAL = 1.0

#: Seconds beyond its own drain's limits a worker is given before it is killed.
DRAIN_MARGIN = 5.0

_restartDelay = backoffPolicy(initialDelay=0.1, maxDelay=5.0, factor=2.0, jitter=lambda: 0.0)


def connectionNumbering(index: int, count: int, generation: int) -> tuple[int, int]:
    """
    The first conn_id and the stride of worker C{index} (1 to C{count}) in
    its C{generation}th restart: C{index}, C{index + count}, ... plus
    C{generation} times 10**12.  Unique across the workers and their
    restarts.
    """
    return generation * GENERATION_STEP + index, count


@attrs.define(eq=False)
class Worker:
    """
    One worker's place under the supervisor, across its restarts.

    @ivar index: 1 to N: the C{worker} field of its events.
    @ivar generation: How many times this place's process was restarted.
    @ivar pid: The running process's, or C{None} between processes.
    @ivar held: Connections the process held when last asked; C{None}
        before the first answer.
    @ivar heldAt: When it answered.
    @ivar pendingSignals: Signals to send once the process has answered a
        first time (before, it may not handle them yet: C{SIGUSR1} would
        kill it).
    """

    index: int
    generation: int = 0
    pid: int | None = None
    process: IProcessTransport | None = None
    control: SupervisorControl | None = None
    startedAt: float = 0.0
    held: int | None = None
    heldAt: float = 0.0
    accepted: int = 0
    quickDeaths: int = 0
    restart: IDelayedCall | None = None
    pendingSignals: list[int] = attrs.Factory(list)

    @property
    def running(self) -> bool:
        return self.process is not None


class WorkerMetrics(Protocol):
    """
    What keeps the workers' metrics (see L{WorkersCollector}).
    """

    def refresh(self, workers: Sequence[Worker]) -> Deferred[None]:
        """
        Ask every running worker for its metrics now.
        """

    def retire(self, worker: Worker) -> None:
        """
        C{worker}'s process is gone: keep what it counted.
        """


def _stoppedBy(reactor: Any) -> str:
    # The signal twist's reactor recorded (it dies of it once stopped);
    # none: stopped by the program itself.
    signum = getattr(reactor, "_exitSignal", None)
    return signal.Signals(signum).name if signum else "a stop"


#: The signals a worker drains on (twist dies of them once drained).
_DRAINING_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def _stoppedCleanly(reason: Failure) -> bool:
    signum = getattr(reason.value, "signal", None)
    if signum:
        return signum in _DRAINING_SIGNALS
    return not getattr(reason.value, "exitCode", None)


def describeEnd(reason: Failure) -> str:
    """
    How a process ended, in words: C{exited with status 3}, C{was killed by
    SIGKILL}.
    """
    signum = getattr(reason.value, "signal", None)
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by {name}"
    return f"exited with status {getattr(reason.value, 'exitCode', None) or 0}"


class _WorkerProcess(ProcessProtocol):
    def __init__(self, pool: WorkerPool, worker: Worker) -> None:
        self.pool = pool
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:
        self.pool.ended(self.worker, reason)


class WorkerPool:
    """
    N worker processes serving the sockets the supervisor bound.

    A worker that dies is restarted after a back-off (0.1 s, doubling to
    5 s; at once after a life of 10 s or more); after C{restartLimit}
    deaths in C{restartWindow} seconds the pool gives up (C{giveUp} hears
    one line saying why).  L{drain} passes the supervisor's signal on to
    every worker and fires once all have exited.

    @ivar workers: Each worker's place, by index.
    @ivar deaths: When workers died (within the last C{restartWindow}).
    """

    def __init__(
        self,
        count: int,
        reactor: IReactorCore,
        command: Callable[[Worker], Sequence[str]],
        giveUp: Callable[[str], object],
        *,
        environ: Mapping[str, str],
        restartLimit: int = 5,
        restartWindow: float = 10.0,
        drainBudget: float = 15.0,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.workers = [Worker(index) for index in range(1, count + 1)]
        self._reactor: Any = reactor
        self._command = command
        self._giveUp = giveUp
        self._environ = dict(environ)
        self._restartLimit = restartLimit
        self._restartWindow = restartWindow
        self._drainBudget = drainBudget
        self.metrics = metrics
        self.deaths: deque[float] = deque()
        self.inherited: list[int] = []
        self.stopping = False
        self.gaveUp = False
        self._allEnded: Deferred[None] | None = None
        self._poll = LoopingCall(self.poll)
        self._poll.clock = cast(IReactorTime, reactor)
        self._killTimer: IDelayedCall | None = None
        self._previousHandlers: dict[int, Any] = {}

    # -- starting ------------------------------------------------------------

    def start(self, inherited: Sequence[int]) -> None:
        """
        Start every worker with C{inherited} (the listening sockets, in
        order) as its descriptors 3, 4, ...; then poll them every second.
        """
        self.inherited = list(inherited)
        for worker in self.workers:
            if not self.stopping:
                self.spawn(worker)
        if not self.stopping:
            self._poll.start(POLL_INTERVAL, now=False)

    def spawn(self, worker: Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        childFDs: dict[int, int | str] = {0: theirs.fileno(), 1: 1, 2: 2}
        for number, fd in enumerate(self.inherited):
            childFDs[FIRST_INHERITED + number] = fd
        argv = list(self._command(worker))
        try:
            process = self._reactor.spawnProcess(
                _WorkerProcess(self, worker), argv[0], argv, self._environ, childFDs=childFDs
            )
        finally:
            theirs.close()
        control = SupervisorControl()
        ours.setblocking(False)
        try:
            self._reactor.adoptStreamConnection(
                ours.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: control)
            )
        finally:
            ours.close()
        worker.process, worker.control, worker.pid = process, control, process.pid
        worker.startedAt = self._reactor.seconds()
        worker.held, worker.accepted = None, 0
        worker.pendingSignals.clear()
        _log.info(
            "worker {worker} (pid {pid}) started",
            worker=worker.index,
            pid=process.pid,
            generation=worker.generation,
            supervisor="worker-started",
        )

    # -- watching ------------------------------------------------------------

    def running(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.running]

    def poll(self) -> Deferred[Any]:
        """
        Ask every running worker how many connections it holds (and, with
        metrics, for its metrics).
        """
        asked: list[Deferred[Any]] = []
        for worker in self.running():
            control = worker.control
            if control is None or not control.connected:
                continue
            answer: Deferred[dict[str, int]] = control.callRemote(Status)  # type: ignore[no-untyped-call]
            answer.addCallback(self._heard, worker, worker.pid)
            answer.addErrback(lambda _: None)
            asked.append(answer)
        if self.metrics is not None:
            asked.append(self.metrics.refresh(self.running()))
        return gatherResults(asked, consumeErrors=True).addBoth(lambda _: None)

    def _heard(self, answer: dict[str, int], worker: Worker, pid: int | None) -> None:
        if worker.pid == pid:
            if worker.held is None:
                _log.info(
                    "worker {worker} (pid {pid}) is serving",
                    worker=worker.index,
                    pid=pid,
                    supervisor="worker-serving",
                )
            worker.held, worker.accepted = answer["open"], answer["accepted"]
            worker.heldAt = self._reactor.seconds()
            pending, worker.pendingSignals = worker.pendingSignals, []
            for signum in pending:
                self._signal(worker, signum)

    def ended(self, worker: Worker, reason: Failure) -> None:
        """
        C{worker}'s process is gone: restart it, or count it out of the drain.
        """
        pid, how = worker.pid, describeEnd(reason)
        held = self._heldMessage(worker)
        if self.metrics is not None:
            self.metrics.retire(worker)
        worker.process = worker.pid = worker.control = None
        if self.stopping:
            _log.info(
                "worker {worker} (pid {pid}) {how}",
                worker=worker.index,
                pid=pid,
                how=how,
                supervisor="worker-exited",
            )
            self._checkAllEnded()
            return
        if worker.held is not None and _stoppedCleanly(reason):
            # Asked to stop, by someone else than the supervisor (a signal
            # to this worker alone, or to the whole unit, the supervisor's
            # own still on its way): not a failure, and not counted.  One
            # that never answered counts, however it ended: a worker that
            # cannot start must not be restarted at once forever.
            _log.info(
                "worker {worker} (pid {pid}) {how} and drained; starting it again",
                worker=worker.index,
                pid=pid,
                how=how,
                supervisor="worker-stopped",
            )
            worker.restart = self._reactor.callLater(0, self._restart, worker)
            return
        now = self._reactor.seconds()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] <= now - self._restartWindow:
            self.deaths.popleft()
        if len(self.deaths) >= self._restartLimit:
            self._gaveUp(worker, pid, how)
            return
        if now - worker.startedAt >= STABLE_LIFE:
            worker.quickDeaths = 0
        delay = _restartDelay(worker.quickDeaths)
        worker.quickDeaths += 1
        _log.warn(
            "worker {worker} (pid {pid}) {how}{held}; restarting it in {restart_in_s:g} s",
            worker=worker.index,
            pid=pid,
            how=how,
            held=held,
            held_connections=worker.held,
            restart_in_s=delay,
            supervisor="worker-died",
        )
        worker.restart = self._reactor.callLater(delay, self._restart, worker)

    def _heldMessage(self, worker: Worker) -> str:
        if worker.held is None:
            return ""
        age = self._reactor.seconds() - worker.heldAt
        if not worker.held:
            return f" holding no connection ({age:.1f} s before)"
        plural = "" if worker.held == 1 else "s"
        return f", and with it the {worker.held} connection{plural} it held ({age:.1f} s before)"

    def _restart(self, worker: Worker) -> None:
        worker.restart = None
        if self.stopping:
            return
        worker.generation += 1
        self.spawn(worker)

    def _gaveUp(self, worker: Worker, pid: int | None, how: str) -> None:
        self.gaveUp = True
        message = (
            f"workers died {len(self.deaths)} times in {self._restartWindow:g} s (the last, "
            f"worker {worker.index} (pid {pid}), {how}); not restarting them again"
        )
        _log.critical(
            "tcplife: {message}",
            message=message,
            worker=worker.index,
            pid=pid,
            supervisor="gave-up",
        )
        self._giveUp(message)

    # -- draining ------------------------------------------------------------

    def drain(self) -> Deferred[None]:
        """
        Pass the signal that stops the supervisor on to every worker, as a
        drain; the Deferred fires once all have exited.  One still running
        C{drainBudget} seconds later is killed.
        """
        signalName = _stoppedBy(self._reactor)
        self.stopping = True
        if self._poll.running:
            self._poll.stop()
        for worker in self.workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
            if worker.control is not None:
                worker.control.tell(Drain, signal=signalName)
        self._allEnded = Deferred()
        self._killTimer = self._reactor.callLater(self._drainBudget, self._killLeft)
        self._checkAllEnded()
        return self._allEnded

    def _checkAllEnded(self) -> None:
        if self._allEnded is None or self.running():
            return
        if self._killTimer is not None and self._killTimer.active():
            self._killTimer.cancel()
        self._restoreSignals()
        done, self._allEnded = self._allEnded, None
        done.callback(None)

    def _killLeft(self) -> None:
        for worker in self.running():
            _log.warn(
                "worker {worker} (pid {pid}) has not drained in {budget_s:g} s: killing it",
                worker=worker.index,
                pid=worker.pid,
                budget_s=self._drainBudget,
            )
            assert worker.process is not None
            with suppress(ProcessExitedAlready):
                worker.process.signalProcess("KILL")

    def endNow(self, reason: str) -> None:
        """
        Have every worker abort its drain's connections now.
        """
        for worker in self.running():
            if worker.control is not None:
                worker.control.tell(EndNow, reason=reason)

    def forwardSignal(self, signum: int) -> None:
        """
        From now on, pass C{signum} on to every running worker when the
        supervisor receives it (C{SIGUSR1}: reopen the events file).
        """
        if threading.current_thread() is not threading.main_thread():
            return

        def forward(number: int, frame: FrameType | None) -> None:
            self._reactor.callFromThread(self.signalAll, number)

        signal.signal(signum, forward)

    def signalAll(self, signum: int) -> None:
        """
        Send the signal C{signum} to every running worker; one that has not
        answered yet (still starting, its handler perhaps not set) gets it
        once it answers.
        """
        for worker in self.running():
            if worker.held is None:
                if signum not in worker.pendingSignals:
                    worker.pendingSignals.append(signum)
            else:
                self._signal(worker, signum)

    def _signal(self, worker: Worker, signum: int) -> None:
        if worker.process is not None:
            # Twisted's signalProcess takes a name only for its five.
            with suppress(ProcessExitedAlready, OSError):
                worker.process.signalProcess(signum)

    def trapSecondSignal(self) -> None:
        """
        From now on a SIGINT or SIGTERM ends every worker's drain at once,
        and SIGHUP is ignored, as in the single server's drain.
        """
        if self._previousHandlers or threading.current_thread() is not threading.main_thread():
            return

        def second(signum: int, frame: FrameType | None) -> None:
            reason = f"second {signal.Signals(signum).name}"
            self._reactor.callFromThread(self.endNow, reason)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previousHandlers[signum] = signal.signal(signum, second)
        self._previousHandlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _restoreSignals(self) -> None:
        for signum, handler in self._previousHandlers.items():
            signal.signal(signum, handler)
        self._previousHandlers.clear()
