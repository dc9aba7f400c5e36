"""
The C{twist} glue: each plugin's options, checked in the user's terms, and
the service the options ask for, built from the rooms below; and what
belongs to the process (its descriptor limit, its exit status).

L{tcplife.tap.echo} is C{twist tcpecho}, L{tcplife.tap.client} is
C{twist tcpclient}: the modules the plugins in C{twisted/plugins/} name.
Nothing else imports this room.
"""
