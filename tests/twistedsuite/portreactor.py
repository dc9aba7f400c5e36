"""
Test-only reactors whose listening calls build tcplife's ports and whose
TCP connects build tcplife's client connections, so that Twisted's own tests
exercise both: the stock epoll reactor's and tcplife-direct's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.epollreactor import EPollReactor

from tcplife.internet import ClientReactor
from tcplife.internet._port import PortReactor
from tcplife.internet.directreactor import DirectEPollReactor


class ListensThroughPorts:
    """
    A reactor mixin: C{listenTCP}, C{listenSSL}, C{listenUNIX} and
    C{adoptStreamPort} go through L{PortReactor}, so C{LifecyclePort},
    C{DirectServer} and tcplife's TLS serve every connection a test accepts.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ports = PortReactor(self)
        self._clients = ClientReactor(self)

    def listenTCP(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.listenTCP(*args, **kwargs)

    def listenSSL(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.listenSSL(*args, **kwargs)

    def listenUNIX(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.listenUNIX(*args, **kwargs)

    def adoptStreamPort(self, *args: Any, **kwargs: Any) -> Any:
        return self._ports.adoptStreamPort(*args, **kwargs)

    # And C{connectTCP} and C{connectSSL} through L{ClientReactor}, so that
    # C{DirectClient} makes every connection a test makes.
    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        return self._clients.connectTCP(*args, **kwargs)

    def connectSSL(self, *args: Any, **kwargs: Any) -> Any:
        return self._clients.connectSSL(*args, **kwargs)


class PortEPollReactor(ListensThroughPorts, EPollReactor):
    """
    The stock epoll reactor listening through tcplife's ports: its
    connections are dispatched by the batched poller.
    """


class DirectPortReactor(ListensThroughPorts, DirectEPollReactor):
    """
    tcplife-direct listening through tcplife's ports, as C{twist --reactor
    tcplife-direct tcpecho} serves.
    """
