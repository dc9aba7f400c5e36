"""
C{python -m tests.matrix} (C{make matrix}): the suite on each leg of the
version matrix, each in a new virtualenv under C{build/matrix/}.

  - lowest: the oldest Python the project declares, with every dependency
    and test dependency at its C{>=} floor (a pip constraints file pins
    them), the README's test command (C{python -m pytest}) and then
    C{make twisted-suite}'s Twisted tests;
  - newest: the newest Python it declares, with the newest releases, the
    README's test command.

A leg whose Python is not installed (C{pythonX.Y} on C{PATH} or under
pyenv's versions) is skipped with one line saying so, and the matrix passes
on the legs it could run.  It fails when a leg fails to install or to pass.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from .legs import (
    ROOT,
    TEST_EXTRA,
    Leg,
    constraintsText,
    defaultPyenvRoot,
    findPython,
    planLegs,
    readProject,
    skippedLine,
)

#: Seconds each step may take before it is ended: installing (downloads
#: included), the suite (about 90 s here), the Twisted tests (about 40 s;
#: they bound themselves too).
INSTALL_TIMEOUT = 900
SUITE_TIMEOUT = 1500
TWISTED_SUITE_TIMEOUT = 1200

#: Lines of a failed install's log shown in the report.
_LOG_TAIL = 30


def run(
    command: Sequence[str | Path],
    timeout: float,
    environment: Mapping[str, str],
    output: BinaryIO | None = None,
) -> int:
    """
    Run C{command} from the project's root, its output to ours (or to
    C{output}); its status, or C{-SIGKILL} if the time limit ended it and
    everything it started.
    """
    process = subprocess.Popen(
        [str(part) for part in command],
        cwd=ROOT,
        env=dict(environment),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=None if output is None else subprocess.STDOUT,
        # A group of its own, so that a time limit also ends the servers the
        # tests started.
        start_new_session=True,
    )
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"matrix: ended after {timeout:.0f} s: {' '.join(map(str, command))}")
        return -signal.SIGKILL


def legEnvironment(venv: Path) -> dict[str, str]:
    """
    Our environment, as if C{venv} were activated.
    """
    environment = dict(os.environ)
    for inherited in ("PYTHONPATH", "PYTHONHOME"):
        environment.pop(inherited, None)
    environment["VIRTUAL_ENV"] = str(venv)
    environment["PATH"] = os.pathsep.join([str(venv / "bin"), environment.get("PATH", "")])
    return environment


def install(leg: Leg, python: Path, venv: Path) -> bool:
    """
    A new virtualenv at C{venv} with the project (editable, as C{make test}
    installs it) and its test extra, at the leg's pins.  What pip says goes
    to a log beside it, shown if it fails.
    """
    log = venv.parent / f"{venv.name}-install.log"
    environment = legEnvironment(venv)
    pip: list[str | Path] = [venv / "bin" / "python", "-m", "pip", "install", "--progress-bar=off"]
    project = ["-e", f"{ROOT}[{TEST_EXTRA}]"]
    if leg.pins:
        constraints = venv.parent / f"{venv.name}-constraints.txt"
        constraints.write_text(constraintsText(leg.pins), encoding="utf-8")
        project = ["--constraint", str(constraints), *project]
    else:
        project = ["--upgrade", "--upgrade-strategy=eager", *project]
    steps: list[list[str | Path]] = [
        [python, "-m", "venv", "--clear", venv],
        [*pip, "--upgrade", "pip"],
        [*pip, *project],
    ]
    status = 0
    with log.open("wb") as output:
        for step in steps:
            output.write(f"$ {' '.join(map(str, step))}\n".encode())
            output.flush()
            status = run(step, INSTALL_TIMEOUT, environment, output)
            if status != 0:
                break
    if status != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-_LOG_TAIL:]
        print(f"matrix: {leg.name}: installing failed (status {status}); the end of {log}:")
        print("\n".join(f"    {line}" for line in tail))
        return False
    return True


def installedVersions(venv: Path, names: Sequence[str]) -> str:
    """
    C{"twisted 26.4.0, attrs 23.1.0, ..."}: what the leg really got.
    """
    script = (
        "import importlib.metadata as m, platform, sys\n"
        "found = [f'Python {platform.python_version()}']\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found.append(f'{name} {m.version(name)}')\n"
        "    except m.PackageNotFoundError:\n"
        "        found.append(f'{name} (not installed)')\n"
        "print(', '.join(found))\n"
    )
    said = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, *names],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return said.stdout.strip() or said.stderr.strip()


def runLeg(leg: Leg, python: Path, workdir: Path, watched: Sequence[str]) -> list[str]:
    """
    Install and run one leg; what failed (nothing if it passed).
    """
    venv = workdir / f"{leg.name}-py{leg.python}"
    print(f"matrix: {leg.describe()}: {python}, virtualenv {venv}", flush=True)
    if not install(leg, python, venv):
        return ["install"]
    print(f"matrix: {leg.name}: {installedVersions(venv, watched)}", flush=True)
    steps: list[tuple[str, list[str | Path], float]] = [
        ("suite", [venv / "bin" / "python", "-m", "pytest"], SUITE_TIMEOUT),
    ]
    if leg.twistedSuite:
        steps.append(
            (
                "twisted-suite",
                [venv / "bin" / "python", "-m", "tests.twistedsuite"],
                TWISTED_SUITE_TIMEOUT,
            )
        )
    failed = []
    for name, command, timeout in steps:
        print(f"matrix: {leg.name}: {name}: {' '.join(map(str, command))}", flush=True)
        if run(command, timeout, legEnvironment(venv)) != 0:
            failed.append(name)
    return failed


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.matrix", description=__doc__)
    parser.add_argument(
        "--leg", action="append", choices=("lowest", "newest"), help="only this leg"
    )
    parser.add_argument(
        "--workdir", type=Path, default=ROOT / "build" / "matrix", help="where the venvs go"
    )
    options = parser.parse_args(argv)
    try:
        legs = planLegs(readProject())
    except ValueError as e:
        print(f"matrix: pyproject.toml: {e}", file=sys.stderr)
        return 2
    # What each leg reports having installed: every package with a floor.
    watched = sorted({name for leg in legs for name in leg.pins})
    pyenvRoot = defaultPyenvRoot(os.environ)
    searchPath = os.environ.get("PATH", os.defpath)
    options.workdir.mkdir(parents=True, exist_ok=True)

    verdicts = []
    failures = 0
    for leg in legs:
        if options.leg and leg.name not in options.leg:
            continue
        python = findPython(leg.python, searchPath, pyenvRoot)
        if python is None:
            verdicts.append(skippedLine(leg, pyenvRoot))
            continue
        started = time.monotonic()
        failed = runLeg(leg, python, options.workdir, watched)
        failures += bool(failed)
        outcome = f"FAILED ({', '.join(failed)})" if failed else "passed"
        elapsed = time.monotonic() - started
        verdicts.append(f"matrix: {leg.describe()}: {outcome}, {elapsed:.0f} s")
    print("\n".join(verdicts))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
