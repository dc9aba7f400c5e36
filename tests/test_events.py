"""
The event log's C{rendered} flag: the same events, rendered or as templates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from tcplife import LifecycleLog

#: Every per-connection event, with arguments that need escaping.
EVENTS: list[Callable[[LifecycleLog], None]] = [
    lambda log: log.accept(1, "[::1]:5", "unix:/tmp/{x}.sock"),
    lambda log: log.connect("tcp:host:9"),
    lambda log: log.connected(2, "127.0.0.1:4", "127.0.0.1:9"),
    lambda log: log.connectFailed("tcp:host:9", "connection refused {really}"),
    lambda log: log.read(3, 10),
    lambda log: log.write(3, 11),
    lambda log: log.halfClose(3, "peer"),
    lambda log: log.close(3, "server", "peer", "fin", 10, 11, 0.0125),
]


def emitted(rendered: bool) -> list[dict[str, Any]]:
    """
    Every per-connection event, as a log with C{rendered} emits it.
    """
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    log = LifecycleLog(Logger(namespace="tcplife", observer=observer), rendered=rendered)
    for emit in EVENTS:
        emit(log)
    return events


def fieldsOf(event: dict[str, Any]) -> dict[str, Any]:
    """
    The event's fields, less those of the one emitting it and when (a
    close's C{opened_at} is the wall clock less its duration).
    """
    ignored = ("log_format", "log_time", "log_logger", "opened_at")
    return {k: v for k, v in event.items() if k not in ignored}


class RenderedFlagTests(SynchronousTestCase):
    """
    With C{rendered} off, events are Twisted's usual templates and fields.
    """

    def test_templatesSayWhatRenderedMessagesSay(self) -> None:
        """
        Each event reads the same either way and has the same fields; only
        its C{log_format} differs: a template naming the fields, instead of
        the message itself.
        """
        rendered, templates = emitted(True), emitted(False)
        self.assertEqual(len(templates), len(EVENTS))
        self.assertEqual([formatEvent(e) for e in templates], [formatEvent(e) for e in rendered])
        for template, message in zip(templates, rendered, strict=True):
            self.assertEqual(list(template), list(message))
            self.assertEqual(fieldsOf(template), fieldsOf(message))
            self.assertIn("{", template["log_format"])
        self.assertEqual(
            formatEvent(rendered[-1]),
            "close #3 by peer (fin): 10 bytes in, 11 bytes out, 0.013 s",
        )
