"""
Twisted's own reactor and transport tests, run against tcplife's reactor and
ports: C{make twisted-suite} (see L{tests.twistedsuite.run}).
"""
