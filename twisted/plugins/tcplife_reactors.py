from twisted.application.reactors import Reactor

direct = Reactor(
    "tcplife-direct",
    "tcplife.internet.directreactor",
    "epoll(7) reactor that dispatches events without a log context per event (tcplife).",
)
