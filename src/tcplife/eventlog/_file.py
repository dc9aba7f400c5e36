"""
Lifecycle events as JSON Lines, buffered and written in batches.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
from collections.abc import Callable, Iterator, Mapping
from time import time
from types import FrameType
from typing import Any

import orjson
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")

_dumps = orjson.dumps
# One line per event; orjson adds the newline without another copy.
_LINE = orjson.OPT_APPEND_NEWLINE

#: What C{--events} takes for standard output.
STANDARD_OUTPUT = "-"

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def _unusual(value: Any) -> str:
    # A field orjson has no encoding for (a user's own event field): its
    # text, rather than the event lost.
    return str(value)


class EventFile:
    """
    A file of lifecycle events, one JSON object a line (JSON Lines: no
    record separator, no Twisted internals): C{time} (seconds since the
    epoch), C{level}, then the event's own fields.

    Lines are kept in memory and written with one C{write} when
    L{flushBytes} have gathered, and otherwise within L{flushInterval}
    seconds of the first one kept: never a system call per event.  Nothing
    is flushed per event either.

    A write that fails (a full disk, a file that is gone) costs the lines it
    could not write, counted in L{dropped}; one warning says so in twist's
    log, the next success ends the episode, and the server serves on.  A
    line cut short by a full disk is cut back off the file, so every line in
    it is whole.

    Several processes may write one file (the workers of C{twist tcpecho
    --workers}): each opens it for appending, and Linux appends each
    C{write} whole, after the others; C{fields} (C{worker}, C{pid}) then
    say whose each line is.  Into a pipe (standard output read by another
    program), only writes of up to C{PIPE_BUF} bytes are kept whole, so a
    C{shared} file writes to a pipe in pieces of whole lines within that.

    @cvar flushInterval: Seconds a kept line may wait to be written.
    @cvar flushBytes: Bytes kept before they are written at once.
    @ivar path: The file's name, or C{"-"} for standard output.
    @ivar written: Lines written so far.
    @ivar dropped: Lines lost so far to failed writes (or given after
        L{close}).
    """

    flushInterval = 0.1
    flushBytes = 64 * 1024

    def __init__(
        self,
        path: str,
        clock: IReactorTime,
        fields: Mapping[str, Any] | None = None,
        shared: bool = False,
    ) -> None:
        """
        Open C{path} for appending (creating it), or take standard output.

        @param fields: Put on every line, after C{time} and C{level}.
        @param shared: Other processes write to the same file.
        @raise OSError: If it cannot be opened.
        """
        self.path = path
        self._clock = clock
        self._fields = dict(fields or {})
        self._shared = shared
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: IDelayedCall | None = None
        self._failing = False
        self._closed = False
        self.written = 0
        self.dropped = 0
        self._fd = self._open()
        self._intoPipe = False
        self._checkPipe()
        self._previousHandler: Any = None
        self._signum: int | None = None

    def _open(self) -> int:
        if self.path == STANDARD_OUTPUT:
            return 1
        return os.open(self.path, _OPEN_FLAGS, 0o644)

    def _checkPipe(self) -> None:
        try:
            self._intoPipe = self._shared and stat.S_ISFIFO(os.fstat(self._fd).st_mode)
        except OSError:
            self._intoPipe = False

    # -- the sink a LifecycleLog writes to ------------------------------------

    def event(self, level: LogLevel, fields: dict[str, Any]) -> None:
        """
        Keep one event as a line, to be written with the next batch.
        """
        if self._closed:
            self.dropped += 1
            return
        record = {"time": time(), "level": level.name, **self._fields, **fields}
        try:
            line = _dumps(record, option=_LINE)
        except TypeError:
            line = _dumps(record, default=_unusual, option=_LINE)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.flushBytes:
            self.flush()
        elif self._timer is None:
            self._timer = self._clock.callLater(self.flushInterval, self._flushLater)

    # -- writing --------------------------------------------------------------

    def _flushLater(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """
        Write every kept line now, with one C{write} (more if the kernel
        takes part of it).
        """
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        lines, self._lines, self._size = self._lines, [], 0
        if not lines:
            return
        data = b"".join(lines)
        written = done = 0
        try:
            for piece in _whole(data, lines) if self._intoPipe else (data,):
                done = 0
                while done < len(piece):
                    done += os.write(self._fd, piece[done:] if done else piece)
                written += done
        except OSError as e:
            self._failed(e, data, written + done, len(lines))
            return
        self.written += len(lines)
        if self._failing:
            self._failing = False
            _log.info(
                "events file {events_file} is written again ({dropped} events lost meanwhile)",
                events_file=self.path,
                dropped=self.dropped,
            )

    def _failed(self, error: OSError, data: bytes, written: int, count: int) -> None:
        whole = data.count(b"\n", 0, written)
        cut = written - (data.rfind(b"\n", 0, written) + 1)
        if cut:
            self._cutBack(cut)
        self.written += whole
        self.dropped += count - whole
        if not self._failing:
            self._failing = True
            _log.warn(
                "events file {events_file} cannot be written ({reason}): its events are "
                "dropped, and counted, until it can; serving goes on",
                events_file=self.path,
                reason=error.strerror or errno.errorcode.get(error.errno or 0, str(error)),
            )

    def _cutBack(self, cut: int) -> None:
        # The disk took part of a line: cut it off, so that every line in
        # the file is whole (not possible on a pipe; nothing to be done).
        try:
            end = os.lseek(self._fd, 0, os.SEEK_END)
            os.ftruncate(self._fd, end - cut)
        except OSError:
            pass

    # -- rotation and the end -------------------------------------------------

    def reopen(self) -> None:
        """
        Write what is kept to the file as it is open now, then open the
        path anew: after C{mv events.jsonl events.jsonl.1}, new events go to
        a new C{events.jsonl} and none is lost.  A path that cannot be
        opened keeps the old file, with one warning.
        """
        self.flush()
        if self.path == STANDARD_OUTPUT or self._closed:
            return
        try:
            fd = self._open()
        except OSError as e:
            _log.warn(
                "events file {events_file} cannot be reopened ({reason}); "
                "events go on to the old one",
                events_file=self.path,
                reason=e.strerror,
            )
            return
        old, self._fd = self._fd, fd
        os.close(old)
        self._checkPipe()
        _log.info("events file {events_file} reopened", events_file=self.path)

    def reopenOnSignal(
        self, callFromThread: Callable[..., Any], signum: int = signal.SIGUSR1
    ) -> None:
        """
        Reopen on C{signum} (C{SIGUSR1}, twistd's signal to reopen its
        log), in the reactor's thread.
        """

        def reopen(number: int, frame: FrameType | None) -> None:
            callFromThread(self.reopen)
            if callable(self._previousHandler):
                self._previousHandler(number, frame)

        self._previousHandler = signal.signal(signum, reopen)
        self._signum = signum

    def _stopReopeningOnSignal(self) -> None:
        signum, self._signum = self._signum, None
        if signum is not None:
            signal.signal(signum, self._previousHandler or signal.SIG_DFL)

    def close(self) -> None:
        """
        Write what is kept and close the file (standard output is only
        flushed).  Events given later are counted as dropped.
        """
        if self._closed:
            return
        self._stopReopeningOnSignal()
        self.flush()
        self._closed = True
        if self._fd != 1:
            os.close(self._fd)


def _whole(data: bytes, lines: list[bytes]) -> Iterator[bytes]:
    """
    C{data} (the C{lines}, joined) in pieces of whole lines, each of at most
    C{PIPE_BUF} bytes (a longer line alone): what a pipe writes whole, as
    one, whoever else writes into it.
    """
    start = size = 0
    for line in lines:
        if size and size + len(line) > select.PIPE_BUF:
            yield data[start : start + size]
            start, size = start + size, 0
        size += len(line)
    if size:
        yield data[start : start + size]
