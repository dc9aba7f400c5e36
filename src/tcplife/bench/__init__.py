"""
The benchmark suite: tcplife's echo server against asyncio, uvloop and bare
Twisted, each pinned to one core while a load client on the other core
checks every echoed byte.  Run it with C{make bench} or
C{python -m tcplife.bench --help}.
"""
