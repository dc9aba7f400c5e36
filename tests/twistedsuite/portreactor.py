"""
A test-only reactor: Twisted's epoll reactor whose listening calls build
tcplife's ports, so that Twisted's own tests exercise them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor

from tcplife._port import PortReactor


class PortEPollReactor(EPollReactor):
    """
    C{EPollReactor}, but C{listenTCP}, C{listenSSL}, C{listenUNIX} and
    C{adoptStreamPort} go through L{PortReactor}: C{LifecyclePort},
    C{DirectServer}, the batched poller and tcplife's TLS serve every
    connection a test accepts.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._ports = PortReactor(self)

    def listenTCP(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.listenTCP(*args, **kwargs)

    def listenSSL(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.listenSSL(*args, **kwargs)

    def listenUNIX(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.listenUNIX(*args, **kwargs)

    def adoptStreamPort(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.adoptStreamPort(*args, **kwargs)


def install() -> None:
    """
    Install L{PortEPollReactor} as the global reactor.
    """
    installReactor(PortEPollReactor())  # type: ignore[no-untyped-call]
