"""
Which JSON encoder writes the event stream (C{--events}): the candidates,
measured in the same run on the records a connection makes::

    python -m tcplife.bench.encoders [--repeats N]

Each candidate turns a record (C{time}, C{level}, then the event's fields)
into one line of bytes, as L{tcplife.eventlog.EventFile} does: orjson,
msgspec (when installed: the C{bench} extra has it), and the standard
library's C{json} with one encoder kept (C{twist}'s own observer makes a new
one per event, slower still).  Prints microseconds per record, the best of
the repeats, and each candidate's ratio to the fastest.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from typing import Any

from ..internet import TCP_INFO_FIELDS

#: A close event with the kernel's view, as tcpecho writes it.
CLOSE: dict[str, Any] = {
    "lifecycle": "close",
    "role": "server",
    "conn_id": 123456,
    "initiator": "peer",
    "how": "fin",
    "bytes_in": 64,
    "bytes_out": 64,
    "duration_s": 0.000123456,
    "peer": "127.0.0.1:54321",
    "local": "127.0.0.1:9000",
    "opened_at": 1796144325.433869,
    "tcp": {name: 1000 + index for index, (name, _, _) in enumerate(TCP_INFO_FIELDS)},
}

#: An accept event.
ACCEPT: dict[str, Any] = {
    "lifecycle": "accept",
    "role": "server",
    "conn_id": 123456,
    "peer": "127.0.0.1:54321",
    "local": "127.0.0.1:9000",
}

Encoder = Callable[[dict[str, Any]], bytes]


def candidates() -> dict[str, Encoder]:
    """
    Each encoder installed, as a function of a record to its line.
    """
    found: dict[str, Encoder] = {}
    import orjson

    found["orjson"] = lambda record: orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    try:
        import msgspec
    except ImportError:
        pass
    else:
        encode = msgspec.json.Encoder().encode
        found["msgspec"] = lambda record: encode(record) + b"\n"
    kept = json.JSONEncoder(separators=(",", ":")).encode
    found["json, one encoder kept"] = lambda record: (kept(record) + "\n").encode()
    found["json, an encoder per event"] = lambda record: (
        json.dumps(record, separators=(",", ":"), default=str) + "\n"
    ).encode()
    return found


def measure(repeats: int, number: int = 20_000) -> dict[str, dict[str, float]]:
    """
    Microseconds per record, by event and candidate (the best of
    C{repeats}), the record made from the event's fields as EventFile does.
    """
    results: dict[str, dict[str, float]] = {}
    for name, fields in (("close", CLOSE), ("accept", ACCEPT)):
        results[name] = {}
        for candidate, encode in candidates().items():

            def once(encode: Encoder = encode, fields: dict[str, Any] = fields) -> bytes:
                return encode({"time": 1796144325.4396744, "level": "info", **fields})

            best = min(timeit.repeat(once, number=number, repeat=repeats))
            results[name][candidate] = best / number * 1e6
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tcplife.bench.encoders")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    for event, timings in measure(args.repeats).items():
        fastest = min(timings.values())
        for candidate, micros in sorted(timings.items(), key=lambda item: item[1]):
            print(f"{event:<7} {candidate:<28} {micros:7.3f} us  {micros / fastest:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
