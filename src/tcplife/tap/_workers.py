"""
The process side of C{twist tcpecho --workers N}: how many workers, the
command each runs (C{twist} again, with the same options and
C{--worker-of}), the fields that tell the processes' log lines apart, and a
worker's control channel on its standard input.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import IO, Any

from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Factory
from twisted.logger import ILogObserver, LogLevel, textFileLogObserver
from twisted.python import usage
from zope.interface import implementer

from ..server import Worker, WorkerControl
from ._options import wholeNumber

#: The most workers C{--workers} takes.
MOST_WORKERS = 1024


def workerCount(text: str) -> int:
    """
    C{--workers}' value: a whole number, or C{auto}: one per CPU this
    process may run on (its affinity, which C{taskset} and cgroups narrow).
    """
    if text.strip().lower() == "auto":
        return len(os.sched_getaffinity(0))
    try:
        return wholeNumber("--workers", text, 1, MOST_WORKERS)
    except usage.UsageError:
        raise usage.UsageError(
            f"--workers must be a whole number from 1 to {MOST_WORKERS}, or 'auto' (one per "
            f"CPU), not {text!r}."
        ) from None


def parseWorkerOf(text: str) -> tuple[int, int, int]:
    """
    C{--worker-of INDEX/COUNT/GENERATION}: which worker this process is, of
    how many, and how many times its place was restarted.
    """
    try:
        index, count, generation = (int(part) for part in text.split("/"))
    except ValueError:
        index = count = generation = -1
    if not (1 <= index <= count <= MOST_WORKERS and generation >= 0):
        raise usage.UsageError(
            f"--worker-of takes INDEX/COUNT/GENERATION (what twist tcpecho --workers gives "
            f"its workers), not {text!r}."
        )
    return index, count, generation


def twistArguments(twistOptions: Any) -> list[str]:
    """
    The C{twist} options a worker runs with: the supervisor's reactor, log
    level, log format and log file (which the worker appends to as well).
    """
    if not isinstance(twistOptions, usage.Options):
        return []
    arguments = []
    name = twistOptions.get("reactorName")
    if name:
        arguments.append(f"--reactor={name}")
    level = twistOptions.get("logLevel")
    if isinstance(level, type(LogLevel.info)):
        arguments.append(f"--log-level={level.name}")
    logFormat = twistOptions.get("logFormat")
    if logFormat:
        arguments.append(f"--log-format={logFormat}")
    arguments.append(f"--log-file={_logFileArgument(twistOptions.get('logFile'))}")
    return arguments


def _logFileArgument(logFile: IO[Any] | None) -> str:
    try:
        number = logFile.fileno() if logFile is not None else 1
    except (OSError, ValueError):
        number = 1
    if number == 2:
        return "+"
    name = getattr(logFile, "name", None)
    if number == 1 or not isinstance(name, str) or name.startswith("<"):
        # Standard output, which the worker shares with the supervisor.
        return "-"
    return name


def workerCommand(
    twistOptions: Any, tcpechoArguments: list[str], count: int
) -> Callable[[Worker], list[str]]:
    """
    What starts worker C{worker}: this Python running C{twist} with the
    supervisor's twist options and its very C{tcpecho} arguments, and
    C{--worker-of}, which makes it a worker.
    """
    prefix = [sys.executable, "-m", "twisted", *twistArguments(twistOptions), "tcpecho"]

    def command(worker: Worker) -> list[str]:
        return [
            *prefix,
            *tcpechoArguments,
            f"--worker-of={worker.index}/{count}/{worker.generation}",
        ]

    return command


@implementer(ILogObserver)
class _Tagged:
    """
    twist's log observer, with C{worker} and C{pid} on every event that does
    not have them (and, in twist's text format, which process logged it).
    """

    def __init__(self, observer: ILogObserver, fields: Mapping[str, object], tag: str | None):
        self._observer = observer
        self._fields = dict(fields)
        self._tag = tag

    def __call__(self, event: dict[str, Any]) -> None:
        for name, value in self._fields.items():
            if name not in event:
                event[name] = value
        if self._tag is not None:
            system = event.get("log_system")
            if system is None:
                level = event.get("log_level")
                name = level.name if isinstance(level, type(LogLevel.info)) else "-"
                system = f"{event.get('log_namespace', '-')}#{name}"
            event["log_system"] = f"{system} {self._tag}"
        self._observer(event)


def tagTwistLog(twistOptions: Any, worker: int, tag: str) -> bool:
    """
    Have twist's log observer put C{worker} and C{pid} on every event (see
    L{_Tagged}); C{tag} names the process in text lines.

    @return: Whether twist's observer was wrapped (not outside twist).
    """
    if not isinstance(twistOptions, usage.Options):
        return False
    make = twistOptions.get("fileLogObserverFactory")
    if make is None:
        return False
    fields = {"worker": worker, "pid": os.getpid()}
    textTag = tag if make is textFileLogObserver else None

    def tagged(outFile: IO[Any]) -> ILogObserver:
        return _Tagged(make(outFile), fields, textTag)

    twistOptions["fileLogObserverFactory"] = tagged
    return True


def leaveTheSupervisorsGroup() -> None:
    """
    Make this worker a process group of its own.  A terminal's Ctrl-C, or
    a C{kill} of the supervisor's group, then reaches the supervisor alone,
    which passes it on as a drain: a worker that got the signal as well
    would take the supervisor's drain, arriving first, for the first signal
    and its own copy for a second one, and abort its drain.  A signal sent
    to the worker itself still drains it (and the supervisor starts it
    again).
    """
    with suppress(OSError):
        os.setpgid(0, 0)


def ignoreRotationUntilReady() -> None:
    """
    Ignore C{SIGUSR1} (the supervisor's reopen of the events file) until
    the worker's own event file takes it over: by default it would kill a
    worker still starting.  (The supervisor waits for a first answer
    anyway.)
    """
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def adoptControl(reactor: IReactorCore, control: WorkerControl, fd: int = 0) -> None:
    """
    Speak to the supervisor through C{fd} (the worker's standard input: its
    end of a socket pair), which then reads from C{/dev/null}.

    @raise SystemExit: If C{fd} is no socket: the process was not started by
        a supervisor.
    """
    try:
        os.set_blocking(fd, False)
        adopt = reactor.adoptStreamConnection  # type: ignore[attr-defined]
        adopt(fd, socket.AF_UNIX, Factory.forProtocol(lambda: control))
    except OSError:
        raise SystemExit(
            "tcplife: --worker-of is for the workers twist tcpecho --workers starts: "
            "standard input is not a supervisor's control channel"
        ) from None
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
