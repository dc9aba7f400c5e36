"""
C{python -m tests.twistedsuite} (C{make twisted-suite}): Twisted's own reactor
and transport tests on the stock epoll reactor, on tcplife-direct, and on
both of these listening through tcplife's ports, compared.

Each module runs on each reactor in a process of its own, bounded by trial's
timeouts (L{suite.PER_TEST_TIMEOUT}) and by a C{timeout} wrapper
(L{suite.PER_RUN_TIMEOUT}), the whole within L{suite.SUITE_TIMEOUT}.  The
target fails for a test that fails (or
hangs, or does not run) on a tcplife reactor but not on stock and is not in
C{deviations.txt}; for a listed deviation that passes (a stale entry); for a
run the time limit ended; and for a module that stock itself could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .suite import (
    DEVIATIONS,
    MODULES,
    PER_RUN_TIMEOUT,
    REACTORS,
    STOCK,
    SUITE_TIMEOUT,
    TCPLIFE_REACTORS,
    Deviation,
    RunResult,
    judge,
    parseDeviations,
    readResults,
    staleUnknown,
)

ROOT = Path(__file__).resolve().parent.parent.parent

# timeout(1)'s statuses when it ended the run.
_TIMED_OUT = (124, 137)


def runOne(module: str, reactor: str, workdir: Path, deadline: float) -> tuple[RunResult, float]:
    """
    Run C{module} on C{reactor} in a child process, ended at C{deadline}
    (C{time.monotonic}) at the latest; its outcomes and the wall time it took.
    """
    workdir.mkdir()
    limit = min(PER_RUN_TIMEOUT, int(deadline - time.monotonic()))
    if limit <= 0:
        return RunResult(completed=False), 0.0
    command = [
        "timeout",
        "--kill-after=10",
        str(limit),
        sys.executable,
        "-m",
        "tests.twistedsuite.child",
        reactor,
        module,
        str(workdir),
    ]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "src")]))
    started = time.monotonic()
    with (workdir / "output.txt").open("wb") as output:
        status = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=ROOT,
            check=False,
        ).returncode
    elapsed = time.monotonic() - started
    results = workdir / "results.jsonl"
    lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
    return readResults(lines, completed=status not in _TIMED_OUT and bool(lines)), elapsed


def firstLines(detail: str, count: int = 6) -> str:
    """
    The end of a traceback (where the error is), indented for the report.
    """
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    return "\n".join(f"        {line}" for line in lines[-count:])


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.twistedsuite", description=__doc__)
    parser.add_argument("--module", action="append", choices=MODULES, help="only this module")
    # Twice the CPUs: most of the long runs are waiting out a hang's timeout.
    jobs = 2 * (os.cpu_count() or 1)
    parser.add_argument("--jobs", type=int, default=jobs, help=f"runs at once ({jobs})")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    options = parser.parse_args(argv)
    modules: tuple[str, ...] = tuple(options.module or MODULES)
    try:
        deviations = parseDeviations(DEVIATIONS.read_text(encoding="utf-8"))
    except ValueError as e:
        print(f"twisted-suite: {DEVIATIONS.name}: {e}", file=sys.stderr)
        return 2

    # Short: Twisted's UNIX tests bind sockets under it (108 bytes at most).
    root = Path(tempfile.mkdtemp(prefix="tcplife-ts-"))
    runs = [(module, reactor) for module in modules for reactor in REACTORS]
    started = time.monotonic()
    deadline = started + SUITE_TIMEOUT
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {
            run: pool.submit(runOne, run[0], run[1], root / f"{index}-{run[1]}", deadline)
            for index, run in enumerate(runs)
        }
        results = {run: future.result() for run, future in futures.items()}
    wall = time.monotonic() - started

    problems = report(modules, results, deviations)
    passed = sum(results[m, r][0].count("pass") for m in modules for r in TCPLIFE_REACTORS)
    skipped = sum(results[m, r][0].count("skip") for m in modules for r in TCPLIFE_REACTORS)
    print(f"twisted-suite: wall time {wall:.0f} s, work directory {root}")
    if problems or options.keep:
        print(f"twisted-suite: logs kept in {root} (N-REACTOR/output.txt, _trial_temp/test.log)")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(f"twisted-suite: {passed} passed, {problems} failed, {skipped} skipped")
    return 1 if problems else 0


def report(
    modules: Sequence[str],
    results: dict[tuple[str, str], tuple[RunResult, float]],
    deviations: dict[tuple[str, str], Deviation],
) -> int:
    """
    Print each run's counts and every problem; returns how many problems.
    """
    problems = 0
    for module in modules:
        stock, _ = results[module, STOCK]
        for reactor in REACTORS:
            result, elapsed = results[module, reactor]
            state = "" if result.completed else "  KILLED by the time limit or broken"
            print(
                f"{reactor:>12} {module}: {result.count('pass')} passed, "
                f"{result.count('fail') + result.count('hung')} failed, "
                f"{result.count('skip')} skipped, {elapsed:.0f} s{state}"
            )
        if not stock.completed or not stock.count("pass"):
            problems += 1
            print(f"  PROBLEM: stock could not run {module}; nothing to compare with")
            for testId, outcome in sorted(stock.outcomes.items()):
                if outcome in ("fail", "hung"):
                    print(f"    {testId} ({outcome})\n{firstLines(stock.details.get(testId, ''))}")
            continue
        onStock = sorted(t for t, o in stock.outcomes.items() if o in ("fail", "hung"))
        for testId in onStock:
            print(f"  note: fails on stock too, not counted: {testId}")
        for reactor in TCPLIFE_REACTORS:
            result, _ = results[module, reactor]
            if not result.completed:
                # trial's own timeouts should have ended any hang: this one
                # blocked beyond them, or the run broke.
                problems += 1
                print(f"  PROBLEM: {reactor} did not finish {module}; see its output.txt")
            verdict = judge(reactor, stock.outcomes, result.outcomes, deviations)
            for testId in verdict.unexpected:
                problems += 1
                outcome = result.outcomes.get(testId, "missing")
                print(f"  UNEXPECTED on {reactor} ({outcome}; stock: {stock.outcomes.get(testId)})")
                print(f"    {testId}\n{firstLines(result.details.get(testId, ''))}")
            seen = set(stock.outcomes) | set(result.outcomes)
            unknown = staleUnknown(reactor, [module], seen, deviations.values())
            for testId in verdict.stale + unknown:
                problems += 1
                print(f"  STALE deviation for {reactor} (it passes, or no such test): {testId}")
            if verdict.expected:
                print(f"  {reactor}: {len(verdict.expected)} expected deviations")
    return problems


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
