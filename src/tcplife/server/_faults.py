"""
Which connections misbehave, and how: fault specs (C{--fault}), the
reproducible draw that picks the connections each applies to, and the
wrappers a drawn connection's protocol is put in.

A spec is a comma-separated list of faults and an optional share,
C{delay=50-200,p=0.1}: the faults apply together, to that share of the
connections.  Several specs each draw on their own, so one connection may
get faults from several.  The draws come from one C{random.Random(seed)}
per server, taken connection by connection in the order the server accepts
them: the same seed and the same order of accepts give the same choices.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter, deque
from collections.abc import Callable, Sequence
from random import Random
from typing import Final

import attrs
from twisted.internet.interfaces import IProtocol, IReactorTime
from twisted.logger import Logger

from ..protocols import (
    CLOSE_AFTER,
    DELAY,
    DROP_INPUT,
    HALF_CLOSE_FIRST,
    RESET_AFTER,
    STOP_READING_AFTER,
    THROTTLE,
    CloseAfter,
    DelayInput,
    DropInput,
    HalfCloseFirst,
    ResetAfter,
    StopReadingAfter,
    Throttle,
)

#: The two faults of the accept queue rather than of a connection.
ACCEPT_DELAY: Final = "accept-delay"
NEVER_ACCEPT: Final = "never-accept"

#: Every fault kind, in the order the C{accept} event lists them: the
#: accept queue's first, then input, output, and the ends.
KINDS: Final = (
    ACCEPT_DELAY,
    NEVER_ACCEPT,
    DELAY,
    STOP_READING_AFTER,
    DROP_INPUT,
    THROTTLE,
    CLOSE_AFTER,
    RESET_AFTER,
    HALF_CLOSE_FIRST,
)

_MILLISECONDS = frozenset({DELAY, ACCEPT_DELAY})
_BYTES = frozenset({STOP_READING_AFTER, CLOSE_AFTER, RESET_AFTER})
_FLAGS = frozenset({DROP_INPUT, HALF_CLOSE_FIRST, NEVER_ACCEPT})

#: What each fault's value is, for the messages about a bad one.
_FORMS: Final = {
    DELAY: "delay=MS or delay=MS-MS",
    ACCEPT_DELAY: "accept-delay=MS or accept-delay=MS-MS",
    THROTTLE: "throttle=BYTES (per second)",
    STOP_READING_AFTER: "stop-reading-after=BYTES",
    CLOSE_AFTER: "close-after=BYTES",
    RESET_AFTER: "reset-after=BYTES",
}

#: The largest byte count or rate a spec may give, and the longest delay.
_MOST_BYTES = 1 << 62
_LONGEST_MS = 86_400_000

#: The largest seed (C{--seed}).
LARGEST_SEED: Final = (1 << 63) - 1

# A namespace of its own: a Logger on a class would be named after the
# class, and with it the module it lives in.
_log = Logger(namespace="tcplife")


class FaultSpecError(ValueError):
    """
    A fault spec that cannot be used; the message says why, in the user's
    terms (one sentence, no full stop).
    """


@attrs.frozen
class Fault:
    """
    One fault: its kind and its value (milliseconds, bytes, or bytes per
    second; C{low} to C{high} for a range, equal otherwise; 0 for a flag).
    """

    kind: str
    low: float = 0
    high: float = 0


@attrs.frozen
class FaultSpec:
    """
    Faults that apply together to a share C{p} of the connections, as one
    C{--fault} gives them.
    """

    faults: tuple[Fault, ...]
    p: float = 1.0

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(fault.kind for fault in self.faults)


def parseFaultSpec(text: str) -> FaultSpec:
    """
    The spec C{text} says (C{delay=50-200,p=0.1}), or L{FaultSpecError}.
    """
    faults: dict[str, Fault] = {}
    share: float | None = None
    if not text.strip():
        raise FaultSpecError(f"it names no fault; give one such as {_EXAMPLE}")
    for item in text.split(","):
        name, equals, value = item.strip().partition("=")
        name, value = name.strip(), value.strip()
        if not name:
            raise FaultSpecError(f"it holds an empty item; give faults such as {_EXAMPLE}")
        if name == "p":
            if share is not None:
                raise FaultSpecError("it gives p twice")
            share = _share(value if equals else "")
            continue
        if name not in KINDS:
            raise FaultSpecError(f"{name!r} is no fault; the faults are {', '.join(KINDS)}")
        if name in faults:
            raise FaultSpecError(f"it gives {name} twice")
        faults[name] = _fault(name, value if equals else None)
    if not faults:
        raise FaultSpecError(f"it names no fault; give one such as {_EXAMPLE}")
    return FaultSpec(tuple(faults.values()), 1.0 if share is None else share)


_EXAMPLE = "delay=50-200 or reset-after=100,p=0.1"


def _share(value: str) -> float:
    try:
        p = float(value)
    except ValueError:
        p = math.nan
    if not 0 < p <= 1:
        raise FaultSpecError(f"p must be a share above 0 and at most 1 (0.1 is 10%), not {value!r}")
    return p


def _fault(kind: str, value: str | None) -> Fault:
    if kind in _FLAGS:
        if value is not None:
            raise FaultSpecError(f"{kind} takes no value, not {value!r}")
        return Fault(kind)
    if not value:
        raise FaultSpecError(f"{kind} needs a value: {_FORMS[kind]}")
    if kind in _MILLISECONDS:
        low, high = _range(kind, value)
        return Fault(kind, low, high)
    lowest = 1 if kind == THROTTLE else 0
    count = _whole(value)
    if count is None or not lowest <= count <= _MOST_BYTES:
        what = "a whole number of bytes" + (" per second, 1 or more" if lowest else "")
        raise FaultSpecError(f"{kind} must be {what}, not {value!r}")
    return Fault(kind, count, count)


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _range(kind: str, value: str) -> tuple[float, float]:
    low, dash, high = value.partition("-")
    bounds = [_milliseconds(low)] + ([_milliseconds(high)] if dash else [])
    if None in bounds:
        raise FaultSpecError(
            f"{kind} must be milliseconds (0 or more, up to a day) or a range of them "
            f"({_FORMS[kind]}), not {value!r}"
        )
    shortest, longest = bounds[0], bounds[-1]
    assert shortest is not None and longest is not None
    if longest < shortest:
        raise FaultSpecError(f"{kind}'s range {value!r} runs backwards; give the shorter first")
    return shortest, longest


def _milliseconds(text: str) -> float | None:
    try:
        ms = float(text)
    except ValueError:
        return None
    return ms if 0 <= ms <= _LONGEST_MS else None


@attrs.frozen
class Draw:
    """
    What one connection drew: its faults (from every spec whose share came
    up), and a seed of its own for the delays it draws as it lives.
    """

    faults: tuple[Fault, ...]
    seed: int

    @property
    def kinds(self) -> tuple[str, ...]:
        """
        The kinds drawn, each once, in the order of L{KINDS}.
        """
        drawn = {fault.kind for fault in self.faults}
        return tuple(kind for kind in KINDS if kind in drawn)

    def acceptWait(self) -> float | None:
        """
        How long this connection waits in the accept queue, in seconds:
        C{math.inf} for C{never-accept}; C{None} when it does not wait.
        """
        waits = [fault for fault in self.faults if fault.kind in (ACCEPT_DELAY, NEVER_ACCEPT)]
        if not waits:
            return None
        if any(fault.kind == NEVER_ACCEPT for fault in waits):
            return math.inf
        random = Random(self.seed)
        return sum(random.uniform(fault.low, fault.high) for fault in waits) / 1000


class FaultPlan:
    """
    The faults of one server: its specs, and the draws, connection by
    connection, of which apply.

    Draws are taken in accept order: L{take} by the factory as it builds
    each connection's protocol, L{peek} by the admission gate, which looks
    at the next connections' draws to know whether to hold the queue first.

    @ivar seed: What the draws come from.
    @ivar counts: Connections each kind of fault was applied to so far.
    @ivar frontWaited: The next draw's accept-queue wait has been served.
    """

    def __init__(self, specs: Sequence[FaultSpec], seed: int) -> None:
        self.specs = tuple(specs)
        self.seed = seed
        self.counts: Counter[str] = Counter()
        self.frontWaited = False
        self.holdsAccepts = any(
            kind in (ACCEPT_DELAY, NEVER_ACCEPT) for spec in self.specs for kind in spec.kinds
        )
        self._random = Random(seed)
        self._ahead: deque[Draw] = deque()

    def _draw(self) -> Draw:
        random = self._random
        # One number per spec for every connection, chosen or not, so that
        # each connection's choice depends only on its place in the order.
        chosen = [spec for spec in self.specs if random.random() < spec.p]
        faults = tuple(fault for spec in chosen for fault in spec.faults)
        return Draw(faults, random.getrandbits(64))

    def peek(self, index: int = 0) -> Draw:
        """
        The draw of the connection C{index} places after the next one to be
        accepted.
        """
        while len(self._ahead) <= index:
            self._ahead.append(self._draw())
        return self._ahead[index]

    def take(self) -> Draw:
        """
        The next connection's draw, counted in L{counts}.
        """
        draw = self._ahead.popleft() if self._ahead else self._draw()
        self.frontWaited = False
        self.counts.update(draw.kinds)
        return draw

    def describe(self) -> str:
        """
        The specs, as C{--fault} would give them, separated by C{"; "}.
        """
        return "; ".join(_describeSpec(spec) for spec in self.specs)


def faultPlan(specs: Sequence[FaultSpec], seed: int | None) -> FaultPlan | None:
    """
    The plan of C{specs} (C{None} if there are none), drawn from C{seed}; or,
    without one, from a random seed, logged so that a run can be drawn again.
    """
    if not specs:
        return None
    if seed is None:
        seed = secrets.randbelow(LARGEST_SEED)
    plan = FaultPlan(specs, seed)
    _log.info(
        "faults on purpose: {faults}; seed {seed} (--seed {seed} draws the same again)",
        faults=plan.describe(),
        seed=seed,
    )
    return plan


def _describeSpec(spec: FaultSpec) -> str:
    items = [_describeFault(fault) for fault in spec.faults]
    if spec.p != 1:
        items.append(f"p={spec.p:g}")
    return ",".join(items)


def _describeFault(fault: Fault) -> str:
    if fault.kind in _FLAGS:
        return fault.kind
    if fault.low == fault.high:
        return f"{fault.kind}={fault.low:g}"
    return f"{fault.kind}={fault.low:g}-{fault.high:g}"


def misbehave(protocol: IProtocol, draw: Draw, clock: IReactorTime) -> IProtocol:
    """
    C{protocol} inside the wrappers of the faults C{draw} holds.

    Built from the protocol outwards, in the order of L{_STACKING}: the
    delay holds input before the protocol sees it; the throttle paces output
    above the cuts, which so count the bytes that really leave; the stop to
    reading is lowest, so that nothing above it can resume reading.
    """
    own = [fault for fault in draw.faults if fault.kind in _BUILDERS]
    own.sort(key=lambda fault: _STACKING.index(fault.kind))
    random = Random(draw.seed)
    wrapped = protocol
    for fault in own:
        wrapped = _BUILDERS[fault.kind](wrapped, fault, clock, random)
    return wrapped


_Builder = Callable[[IProtocol, Fault, IReactorTime, Random], IProtocol]

#: How each of a connection's own faults wraps it.
_BUILDERS: Final[dict[str, _Builder]] = {
    DELAY: lambda p, f, clock, random: DelayInput(p, clock, f.low / 1000, f.high / 1000, random),
    THROTTLE: lambda p, f, clock, random: Throttle(p, clock, int(f.low)),
    CLOSE_AFTER: lambda p, f, clock, random: CloseAfter(p, int(f.low)),
    HALF_CLOSE_FIRST: lambda p, f, clock, random: HalfCloseFirst(p),
    RESET_AFTER: lambda p, f, clock, random: ResetAfter(p, int(f.low)),
    DROP_INPUT: lambda p, f, clock, random: DropInput(p),
    STOP_READING_AFTER: lambda p, f, clock, random: StopReadingAfter(p, int(f.low)),
}

#: The connection's own faults, from the protocol outwards.
_STACKING: Final = (
    DELAY,
    THROTTLE,
    CLOSE_AFTER,
    HALF_CLOSE_FIRST,
    RESET_AFTER,
    DROP_INPUT,
    STOP_READING_AFTER,
)
