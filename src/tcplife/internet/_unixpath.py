"""
The file-system side of UNIX listening sockets: is anybody listening on a
path, and who holds its lock file.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from twisted.internet.unix import _inFilesystemNamespace


def listenerAt(path: bytes | str) -> bool:
    """
    Whether the UNIX socket at C{path} belongs to a process that listens on
    it: a non-blocking connect that the kernel does not refuse.  Only a
    refusal (or no socket there at all) proves that nobody does.

    A name in Linux's abstract namespace (a leading NUL) has no file to look
    at: only the connect tells.
    """
    if _inFilesystemNamespace(path):
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                return False
        except OSError:
            return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return False
        except OSError as e:
            # EAGAIN: its accept queue is full, so somebody listens.  Anything
            # else (EACCES, ...) cannot tell: assume somebody does.
            return e.errno != errno.ENOENT
    return True


def lockHolder(path: bytes | str) -> str | None:
    """
    The process id that C{path}'s Twisted lock file (C{PATH.lock}, a
    symbolic link to the pid) names, if there is one.
    """
    try:
        return os.readlink(os.fsdecode(path) + ".lock")
    except OSError:
        return None
