"""
What a load worker tells the process that started it, one JSON object a
line: that it is ready, each interval, and its report, with every HDR
histogram in HdrHistogram's own compressed encoding, so that the parent can
add them up exactly.
"""

from __future__ import annotations

import json
from typing import Any

from hdrh.histogram import HdrHistogram

from ._intervals import IntervalReport
from ._kernelview import KernelReport, KernelTally
from ._reflect import Reflections
from ._report import LoadReport, TargetReport, countErrors
from ._tally import newHistogram

READY = "ready"
INTERVAL = "interval"
REPORT = "report"


def _encoded(histogram: HdrHistogram) -> str:
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def _decoded(text: str) -> HdrHistogram:
    decoded: HdrHistogram = HdrHistogram.decode(text.encode("ascii"))
    return decoded


def line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n"


def readyLine() -> bytes:
    return line({"kind": READY})


def intervalLine(interval: IntervalReport) -> bytes:
    return line(
        {
            "kind": INTERVAL,
            "index": interval.index,
            "start": interval.start,
            "end": interval.end,
            "messages": interval.messages,
            "size": interval.size,
            "errors": dict(interval.errors),
            "late": interval.late,
            "open": interval.open,
            "cpu": interval.cpu,
            "histogram": _encoded(interval.histogram),
        }
    )


def intervalFrom(document: dict[str, Any]) -> IntervalReport:
    return IntervalReport(
        index=document["index"],
        start=document["start"],
        end=document["end"],
        messages=document["messages"],
        size=document["size"],
        errors=countErrors(document["errors"]),
        late=document["late"],
        open=document["open"],
        cpu=document["cpu"],
        histogram=_decoded(document["histogram"]),
    )


def reportLine(
    report: LoadReport, problem: dict[str, Any] | None, kernel: KernelTally | None = None
) -> bytes:
    """
    C{report}, and what ended the run early if anything did (C{problem}:
    the fatal connect failure's fields, or C{stalled}), and the kernel's
    view of the run's connections (C{kernel}, once the report is made).
    """
    targets = []
    for target in report.targets:
        latency, service = target.histograms
        targets.append(
            {
                "target": target.target,
                "messages": target.messages,
                "opened": target.connectionsOpened,
                "late": target.late,
                "errors": dict(target.errors),
                "latency": _encoded(latency),
                # In a closed loop both are the same histogram.
                "service": None if service is latency else _encoded(service),
            }
        )
    return line(
        {
            "kind": REPORT,
            "duration": report.duration,
            "interrupted": report.interrupted,
            "targets": targets,
            "problem": problem,
            "kernel": None
            if kernel is None
            else {"rtt": _encoded(kernel.rtt), "retransmits": kernel.retransmits},
            "reflect": None if report.reflections is None else report.reflections.toJSON(),
        }
    )


def targetsFrom(document: dict[str, Any]) -> tuple[TargetReport, ...]:
    targets = []
    for each in document["targets"]:
        latency = _decoded(each["latency"])
        service = latency if each["service"] is None else _decoded(each["service"])
        targets.append(
            TargetReport(
                target=each["target"],
                messages=each["messages"],
                connectionsOpened=each["opened"],
                late=each["late"],
                errors=countErrors(each["errors"]),
                histograms=(latency, service),
            )
        )
    return tuple(targets)


def addedTargets(reports: list[tuple[TargetReport, ...]]) -> tuple[TargetReport, ...]:
    """
    The targets of several workers' reports, each target's figures summed
    over the workers, in the order the first report names them.
    """
    names: list[str] = []
    byName: dict[str, list[TargetReport]] = {}
    for targets in reports:
        for target in targets:
            if target.target not in byName:
                names.append(target.target)
                byName[target.target] = []
            byName[target.target].append(target)
    added = []
    for name in names:
        parts = byName[name]
        errors: dict[str, int] = {}
        for part in parts:
            for kind, count in part.errors:
                errors[kind] = errors.get(kind, 0) + count
        latency = newHistogram()
        service = newHistogram()
        sameHistogram = all(part.histograms[0] is part.histograms[1] for part in parts)
        for part in parts:
            latency.add(part.histograms[0])
            if not sameHistogram:
                service.add(part.histograms[1])
        added.append(
            TargetReport(
                target=name,
                messages=sum(part.messages for part in parts),
                connectionsOpened=sum(part.connectionsOpened for part in parts),
                late=sum(part.late for part in parts),
                errors=countErrors(errors),
                histograms=(latency, latency if sameHistogram else service),
            )
        )
    return tuple(added)


def addedKernel(documents: list[dict[str, Any]]) -> KernelReport | None:
    """
    The kernel's view of every worker's connections, from their reports.
    """
    total = KernelTally()
    for document in documents:
        kernel = document.get("kernel")
        if kernel is not None:
            total.add(_decoded(kernel["rtt"]), kernel["retransmits"])
    return total.report()


def addedReflections(documents: list[dict[str, Any]]) -> Reflections | None:
    """
    Who answered every worker's connections, and whom they saw (C{--reflect});
    C{None} without it.
    """
    parts = [Reflections.fromJSON(d["reflect"]) for d in documents if d.get("reflect") is not None]
    return Reflections.added(parts) if parts else None
