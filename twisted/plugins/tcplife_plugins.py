from twisted.application.service import ServiceMaker

tcpecho = ServiceMaker(
    "tcplife echo server",
    "tcplife.tap.echo",
    "RFC 862 echo server that logs every step of each connection's lifecycle.",
    "tcpecho",
)

tcpclient = ServiceMaker(
    "tcplife echo client",
    "tcplife.tap.client",
    "Echo client and load generator that checks every byte and logs each connection's lifecycle.",
    "tcpclient",
)
