"""
The bench's references in C: a small epoll echo server and a small epoll
load client, compiled with gcc when the bench runs, from the sources beside
this module.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_HERE = Path(__file__).parent

#: The C sources, by the name of the program each becomes.
SOURCES = {
    "epoll_echo": _HERE / "epoll_echo.c",
    "epoll_client": _HERE / "epoll_client.c",
}


class CompileError(Exception):
    """
    A program could not be built: no C compiler, or it refused the source.
    """


def compiled(name: str, workdir: Path) -> Path:
    """
    Build C{name} (a key of L{SOURCES}) in C{workdir} with C{gcc -O2}, and
    return the path of the program.

    @raise CompileError: with the compiler's words, if it cannot be built.
    """
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise CompileError("no C compiler (gcc or cc) on PATH")
    program = workdir / name
    done = subprocess.run(
        [gcc, "-O2", "-Wall", "-o", str(program), str(SOURCES[name])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise CompileError(f"{gcc} could not build {name}: {done.stderr.strip()[-500:]}")
    return program
