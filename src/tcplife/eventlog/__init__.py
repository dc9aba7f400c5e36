"""
The event stream: lifecycle events as JSON Lines in a file of their own
(C{--events PATH}), written at almost no cost per event.

  - L{EventFile}: the file, one JSON object a line, buffered in memory and
    written at least every 100 ms; reopened on C{SIGUSR1} for log rotation;
    a full disk costs the events it could not take (counted), never the
    server;
  - L{ClosingAfter}: a service that runs another and closes the file once
    that one has stopped (after a drain's C{drained});
  - L{BatchedJSONLogObserver} and L{batchJSONLog}: twist's own JSON log
    (C{--log-format json}), the same records written without a new encoder
    and a flush per event.

A L{tcplife.events.LifecycleLog} given an L{EventFile} as its C{sink} sends
every per-connection event there instead of through twist's log.  This room
imports nothing of tcplife's; the C{twist} glue (L{tcplife.tap}) and the
package's face import it.
"""

from ._file import EventFile
from ._service import ClosingAfter
from ._twistlog import BatchedJSONLogObserver, batchJSONLog, eventAsJSONText

__all__ = ["BatchedJSONLogObserver", "ClosingAfter", "EventFile", "batchJSONLog", "eventAsJSONText"]
