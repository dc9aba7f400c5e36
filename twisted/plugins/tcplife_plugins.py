from twisted.application.service import ServiceMaker

tcpecho = ServiceMaker(
    "tcplife echo server",
    "tcplife.echo_tap",
    "RFC 862 echo server that logs every step of each connection's lifecycle.",
    "tcpecho",
)
