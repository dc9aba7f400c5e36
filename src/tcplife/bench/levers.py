"""
What each speed lever buys: tcplife as it ships against the same server with
one lever switched off (see C{tcplife.bench._levers}), in the scenarios where
that lever can matter.  Prints a table; --json writes it as JSON::

    python -m tcplife.bench.levers [--repeats N] [--duration S] [--json PATH]

Same method as C{python -m tcplife.bench}: servers pinned to CPU 0, the load
client on CPU 1, server CPU time per message from /proc, runs interleaved and
medians reported.  Each case also runs tcplife a second time under another
name ("tcplife again"), launched as the lever servers are but with no lever
switched off: how far its ratio strays from 1.00x is the noise of that run,
the yardstick for every other ratio in the case.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from ._levers import LEVERS, launchedWithout
from ._run import PYTHON, ServerSpec, Summary, _tcpecho, runBench

#: Each case: the load client's scenario, and twist's options for every
#: server in it.  Transport levers are measured with the per-connection
#: events filtered out, so that only the transport differs.
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rr": ("rr", ("--log-level", "warn")),
    "stream": ("stream", ("--log-level", "warn")),
    "connect": ("connect", ("--log-level", "warn")),
    "connect+events": ("connect", ()),
    "connect+close": ("connect", ()),
}

#: tcpecho's own options in a case, after the port's.
TCPECHO_OPTIONS: dict[str, tuple[str, ...]] = {
    # One line per connection, with the kernel's view (--events-only close).
    "connect+close": ("--events", "{events}", "--events-only", "close"),
}

BASELINE = "tcplife"
CONTROL = "tcplife again"


@dataclass
class CaseResult:
    case: str
    summaries: dict[str, Summary]
    #: Per server: what it is (the lever switched off, or the peer).
    described: dict[str, str]


def serversFor(case: str) -> list[tuple[ServerSpec, str]]:
    """
    uvloop for scale, tcplife twice (baseline and control), then tcplife
    with each lever that matters in C{case} switched off.
    """
    scenario, twistOptions = CASES[case]
    everywhere = frozenset({scenario})
    tcpecho = (*_tcpecho(*twistOptions), *TCPECHO_OPTIONS.get(case, ()))
    writes = bool(TCPECHO_OPTIONS.get(case))
    servers = [
        (
            ServerSpec(
                "uvloop", (PYTHON, "-m", "tcplife.bench._peers", "uvloop", "{port}"), everywhere
            ),
            "plain asyncio protocol on uvloop",
        ),
        (ServerSpec(BASELINE, tcpecho, everywhere, eventsFile=writes), "as it ships"),
        (
            ServerSpec(CONTROL, launchedWithout("", tcpecho), everywhere, eventsFile=writes),
            "as it ships (noise control)",
        ),
    ]
    for lever in LEVERS.values():
        if case in lever.scenarios:
            argv = launchedWithout(lever.name, tcpecho)
            spec = ServerSpec(f"no {lever.name}", argv, everywhere, eventsFile=writes)
            servers.append((spec, lever.off))
    return servers


def runCase(
    case: str, duration: float, repeats: int, workdir: Path, progress: IO[str]
) -> CaseResult:
    scenario, _ = CASES[case]
    specs = serversFor(case)
    results = runBench(
        [scenario], [spec for spec, _ in specs], duration, repeats, 0, workdir, progress
    )
    summaries = results.summaries[scenario]
    baseline = summaries[BASELINE].cpuPerMessage
    if baseline:
        for summary in summaries.values():
            summary.ratios[BASELINE] = summary.cpuPerMessage / baseline
    return CaseResult(case, summaries, {spec.name: what for spec, what in specs})


def table(results: list[CaseResult]) -> str:
    header = (
        f"{'case':<15} {'server':<24} {'CPU us/msg':>10} {'/tcplife':>9} {'/uvloop':>8}"
        f"  {'switched off: Twisted way'}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        for name, s in result.summaries.items():
            lines.append(
                f"{result.case:<15} {name:<24} {s.cpuPerMessage:>10.2f} "
                f"{s.ratios.get(BASELINE, 0):>8.2f}x {s.ratios.get('uvloop', 0):>7.2f}x"
                f"  {result.described[name] if name.startswith('no ') else ''}"
                + (f"  ERRORS: {s.errors[:2]}" if s.errors else "")
            )
    return "\n".join(lines)


def markdown(results: list[CaseResult]) -> str:
    lines = [
        "| case | server | with the lever off | CPU µs/msg | / tcplife | / uvloop |",
        "|---|---|---|---:|---:|---:|",
    ]
    for result in results:
        for name, s in result.summaries.items():
            lines.append(
                f"| {result.case} | {name} | {result.described[name]} | "
                f"{s.cpuPerMessage:.2f} | {s.ratios.get(BASELINE, 0):.2f}x | "
                f"{s.ratios.get('uvloop', 0):.2f}x |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tcplife.bench.levers",
        description="tcplife against itself with one speed lever switched off.",
    )
    parser.add_argument("--duration", type=float, default=1.2, help="seconds per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per server and case")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if not cases or set(cases) - set(CASES):
        parser.error(f"--cases: a comma-separated subset of {', '.join(CASES)}")
    if args.repeats < 1 or args.duration <= 0:
        parser.error("--repeats must be at least 1 and --duration above 0")
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json {args.json}: no such directory {args.json.parent}")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tcplife-levers-") as workdir:
        results = [
            runCase(case, args.duration, args.repeats, Path(workdir), sys.stderr) for case in cases
        ]
    print(table(results))
    print(
        f"\n({time.monotonic() - started:.0f} s; medians of {args.repeats} interleaved runs; "
        f"'{CONTROL}' shows the run's noise)"
    )
    if args.markdown:
        print()
        print(markdown(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "case": r.case,
                        "servers": {
                            name: {"what": r.described[name], **asdict(s)}
                            for name, s in r.summaries.items()
                        },
                    }
                    for r in results
                ],
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
