"""
Endpoint descriptions checked in the user's terms, before Twisted builds them.

Twisted's parsers report a bad description in Python's words (a missing
positional argument, C{int()}'s complaint, a C{KeyError}), late (a port out
of range fails at C{bind()}, after start-up), or not at all (C{backlog=-5}
reaches C{listen()}, which takes it as 0).  Each L{_Form} lists the
parameters one of Twisted's parsers takes, in its positional order, and
what each value must be.  A description that passes goes to Twisted rebuilt
with its type in lower case (the server parsers know only C{tcp:}, not
C{TCP:}) and every value given by name, which each of those parsers accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet import endpoints
from twisted.internet._idna import _idnaBytes
from twisted.internet.abstract import isIPv6Address
from twisted.internet.interfaces import (
    IStreamClientEndpointStringParserWithReactor,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import getPlugins
from zope.interface import Interface

from . import _pemfiles

#: Twisted's own tokenizer, the one its serverFromString and
#: clientFromString use, so that a check sees what Twisted will see.
_parse = cast(
    Callable[[str], tuple[list[str], dict[str, str]]],
    endpoints._parse,
)

_ESCAPING = "a ':' inside a value is written '\\:' (and the whole description quoted in a shell)"


class EndpointError(ValueError):
    """
    An endpoint description that cannot serve; the message says why, in one
    sentence (without its final full stop).
    """


@dataclass(frozen=True)
class CheckedEndpoint:
    """
    A description that passed, as Twisted is to get it.

    @ivar kind: The endpoint type, in lower case.
    @ivar description: For Twisted's C{serverFromString} or C{clientFromString}.
    @ivar proxied: C{haproxy:} came first: read a PROXY header on each connection.
    @ivar checked: C{False} for a type only a Twisted plugin knows: its
        parser is the only check.
    """

    kind: str
    description: str
    proxied: bool = False
    checked: bool = True


Check = Callable[[str, str], None]
"""Raises L{EndpointError} unless the value (the second argument) of the parameter
named first is usable."""


@dataclass(frozen=True)
class _Form:
    """
    What one of Twisted's parsers takes.

    @ivar parameters: Every parameter name, in the parser's positional order,
        with its check.
    @ivar positional: How many values may come without a name.
    @ivar required: Parameters without a default.
    @ivar example: A description of this type that works.
    @ivar fillUnnamed: Values without a name go to the parameters not given
        by name (Twisted's client C{tcp:} and C{ssl:}), rather than in order.
    @ivar usual: How many values users give without a name; a mistake in a
        description with more is likely a ':' that should have been escaped.
    @ivar together: Checks of parameters that depend on one another.
    """

    parameters: Mapping[str, Check]
    positional: int
    required: tuple[str, ...]
    example: str
    usual: int
    fillUnnamed: bool = False
    together: tuple[Callable[[Mapping[str, str]], None], ...] = field(default=())


def _wholeNumber(lowest: int, highest: int, unit: str = "") -> Check:
    def check(name: str, value: str) -> None:
        try:
            number = int(value)
        except ValueError:
            number = lowest - 1
        if not lowest <= number <= highest:
            raise EndpointError(
                f"{name} must be a whole number{unit} from {lowest} to {highest}, not '{value}'"
            )

    return check


def _someText(what: str) -> Check:
    def check(name: str, value: str) -> None:
        if not value:
            raise EndpointError(f"{name} must name {what}, not ''")

    return check


def _anything(name: str, value: str) -> None:
    pass


def _flag(name: str, value: str) -> None:
    if value not in ("0", "1"):
        raise EndpointError(f"{name} must be 0 or 1, not '{value}'")


def _fileMode(name: str, value: str) -> None:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise EndpointError(f"{name} must be octal permissions from 0 to 777, not '{value}'")


def _ipv6Address(name: str, value: str) -> None:
    if not isIPv6Address(value):
        raise EndpointError(f"{name} must be an IPv6 address, not '{value}'")


def _hostName(name: str, value: str) -> None:
    if not value:
        raise EndpointError(f"{name} must name a host, not ''")
    if isIPv6Address(value):
        # Twisted encodes it as a host name (IDNA), which has no colons.
        raise EndpointError(f"{name} must be a host name or an IPv4 address, not '{value}'")
    try:
        _idnaBytes(value)
    except UnicodeError as e:
        raise EndpointError(f"{name} '{value}' is not a host name ({e})") from None


_DOMAINS = ("INET", "INET6", "UNIX")


def _domain(name: str, value: str) -> None:
    if value not in _DOMAINS:
        raise EndpointError(f"{name} must be INET, INET6 or UNIX, not '{value}'")


_SSL_METHODS = sorted(n for n in dir(SSL) if n.endswith("_METHOD") and not n.startswith("DTLS"))


def _sslMethod(name: str, value: str) -> None:
    if value not in _SSL_METHODS:
        raise EndpointError(f"{name} must be one of {', '.join(_SSL_METHODS)}, not '{value}'")


def _asEndpointError(check: Callable[..., None], *args: str | None) -> None:
    try:
        check(*args)
    except _pemfiles.UnusableFileError as e:
        raise EndpointError(str(e)) from None


def _fileCheck(check: Callable[[str, str], None]) -> Check:
    return lambda name, value: _asEndpointError(check, name, value)


def _oneSocket(values: Mapping[str, str]) -> None:
    if ("index" in values) == ("name" in values):
        raise EndpointError(
            "systemd needs either index= or name= to pick the inherited socket "
            "(for example systemd:domain=INET:name=tcpecho)"
        )


def _serverKeyPair(values: Mapping[str, str]) -> None:
    key = values.get("privateKey", "server.pem")  # Twisted's default
    _asEndpointError(
        _pemfiles.checkKeyAndCertificate, "privateKey", key, "certKey", values.get("certKey")
    )


def _clientCertificate(certificate: str) -> Callable[[Mapping[str, str]], None]:
    """
    The client certificate of C{ssl:} (C{certKey=}) or C{tls:}
    (C{certificate=}), with C{privateKey=}.
    """

    def check(values: Mapping[str, str]) -> None:
        certPath, keyPath = values.get(certificate), values.get("privateKey")
        if certPath is not None:
            _asEndpointError(
                _pemfiles.checkCertificateAndKey, certificate, certPath, "privateKey", keyPath
            )
        elif keyPath is not None:
            # Twisted would quietly connect without any client certificate.
            raise EndpointError(
                f"privateKey= needs {certificate}= too: the client certificate "
                "that goes with the key"
            )

    return check


def _wrappedEndpoint(name: str, value: str) -> None:
    try:
        checkClient(value)
    except EndpointError as e:
        raise EndpointError(f"{name} '{value}' is not usable: {e}") from None


_PORT = _wholeNumber(0, 65535)
_CLIENT_PORT = _wholeNumber(1, 65535)
_BACKLOG = _wholeNumber(1, 65535)
_TIMEOUT = _wholeNumber(1, 1_000_000, " of seconds")
_PATH = _someText("a socket path")
_TRUST_ROOTS = _fileCheck(_pemfiles.checkTrustRoots)

_SERVER_FORMS: Mapping[str, _Form] = {
    # _parseTCP(factory, port, interface="", backlog=50)
    "tcp": _Form(
        {"port": _PORT, "interface": _anything, "backlog": _BACKLOG},
        positional=3,
        required=("port",),
        example="tcp:9000",
        usual=1,
    ),
    # _TCP6ServerParser._parseServer(reactor, port, backlog=50, interface="::")
    "tcp6": _Form(
        {"port": _PORT, "backlog": _BACKLOG, "interface": _ipv6Address},
        positional=3,
        required=("port",),
        example="tcp6:9000:interface=\\:\\:1",
        usual=1,
    ),
    # _parseUNIX(factory, address, mode="666", backlog=50, lockfile=True)
    "unix": _Form(
        {"address": _PATH, "mode": _fileMode, "backlog": _BACKLOG, "lockfile": _flag},
        positional=4,
        required=("address",),
        example="unix:/run/echo.sock",
        usual=1,
    ),
    # _parseSSL(factory, port, privateKey="server.pem", certKey=None,
    # sslmethod=None, interface="", backlog=50, extraCertChain=None,
    # dhParameters=None)
    "ssl": _Form(
        {
            "port": _PORT,
            "privateKey": _anything,  # with certKey, by _serverKeyPair
            "certKey": _anything,
            "sslmethod": _sslMethod,
            "interface": _anything,
            "backlog": _BACKLOG,
            "extraCertChain": _fileCheck(_pemfiles.checkCertificates),
            "dhParameters": _fileCheck(_pemfiles.checkDHParameters),
        },
        positional=8,
        required=("port",),
        example="ssl:9443:privateKey=key.pem:certKey=cert.pem",
        usual=1,
        together=(_serverKeyPair,),
    ),
    # _SystemdParser._parseServer(reactor, domain, index=None, name=None)
    "systemd": _Form(
        {"domain": _domain, "index": _wholeNumber(0, 1 << 16), "name": _someText("a socket")},
        positional=3,
        required=("domain",),
        example="systemd:domain=INET:name=tcpecho",
        usual=0,
        together=(_oneSocket,),
    ),
    # _TLSServerEndpointParser._actualParseStreamServer(reactor, path,
    # port="443", backlog="50", interface="::")
    "tls": _Form(
        {
            "path": _fileCheck(_pemfiles.checkServingFolder),
            "port": _PORT,
            "backlog": _BACKLOG,
            "interface": _anything,
        },
        positional=4,
        required=("path",),
        example="tls:/etc/tcplife/certificates:port=9443",
        usual=1,
    ),
}

_CLIENT_TCP = {
    "host": _someText("a host"),
    "port": _CLIENT_PORT,
    "timeout": _TIMEOUT,
    "bindAddress": _someText("a local address"),
}

_CLIENT_FORMS: Mapping[str, _Form] = {
    # _parseClientTCP(*args, **kwargs): host and port, by name or not
    "tcp": _Form(
        _CLIENT_TCP,
        positional=2,
        required=("host", "port"),
        example="tcp:127.0.0.1:9000",
        usual=2,
        fillUnnamed=True,
    ),
    # _parseClientSSL: _parseClientTCP's, and the certificates'
    "ssl": _Form(
        {
            **_CLIENT_TCP,
            "certKey": _anything,  # with privateKey, by _clientCertificate
            "privateKey": _anything,
            "caCertsDir": _TRUST_ROOTS,
            "hostname": _hostName,
        },
        positional=2,
        required=("host", "port"),
        example="ssl:example.com:443:caCertsDir=/etc/ssl/certs",
        usual=2,
        fillUnnamed=True,
        together=(_clientCertificate("certKey"),),
    ),
    # _parseClientUNIX(*args, **kwargs): path, timeout, lockfile
    "unix": _Form(
        {"path": _PATH, "timeout": _TIMEOUT, "lockfile": _flag},
        positional=1,
        required=("path",),
        example="unix:/run/echo.sock",
        usual=1,
    ),
    # _parseClientTLS(reactor, host, port, timeout=b"30", bindAddress=None,
    # certificate=None, privateKey=None, trustRoots=None, endpoint=None)
    "tls": _Form(
        {
            "host": _hostName,
            "port": _CLIENT_PORT,
            "timeout": _TIMEOUT,
            "bindAddress": _someText("a local address"),
            "certificate": _anything,  # with privateKey, by _clientCertificate
            "privateKey": _anything,
            "trustRoots": _TRUST_ROOTS,
            "endpoint": _wrappedEndpoint,
        },
        positional=8,
        required=("host", "port"),
        example="tls:example.com:443",
        usual=2,
        together=(_clientCertificate("certificate"),),
    ),
}


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _inOrder(names: list[str]) -> str:
    if len(names) < 2:
        return names[0] if names else "nothing"
    return f"{', '.join(names[:-1])} and {names[-1]} (in that order)"


def _bind(kind: str, form: _Form, unnamed: list[str], named: dict[str, str]) -> dict[str, str]:
    """
    Every value by its parameter's name, as Twisted's parser would bind them.
    """
    unknown = [name for name in named if name not in form.parameters]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        takes = ", ".join(form.parameters)
        raise EndpointError(f"unknown parameter{plural} {_names(unknown)} ({kind} takes {takes})")
    order = list(form.parameters)[: form.positional]
    if form.fillUnnamed:
        order = [name for name in order if name not in named]
    if len(unnamed) > len(order):
        raise EndpointError(
            f"too many values without a name: {kind} takes {_inOrder(order)} without "
            "one; give the rest as name=value"
        )
    values = dict(named)
    for name, value in zip(order, unnamed, strict=False):
        if name in values:
            raise EndpointError(f"{name} is given twice, by position and as {name}=")
        values[name] = value
    missing = [name for name in form.required if name not in values]
    if missing:
        raise EndpointError(f"{kind} needs {' and '.join(missing)} (for example {form.example})")
    bound = {name: values[name] for name in form.parameters if name in values}
    for name, value in bound.items():
        form.parameters[name](name, value)
    for check in form.together:
        check(bound)
    return bound


def _split(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    The type, and the values without and with a name.
    """
    prefix, colon, rest = description.partition(":")
    kind = prefix.strip().lower()
    if not colon:
        return kind, [], {}
    try:
        unnamed, named = _parse(rest)
    except RuntimeError:
        # Twisted's tokenizer reads the character after each backslash.
        raise EndpointError("it ends in a '\\' that escapes nothing") from None
    return kind, unnamed, named


def _checkForm(kind: str, form: _Form, unnamed: list[str], named: dict[str, str]) -> str:
    try:
        values = _bind(kind, form, unnamed, named)
    except EndpointError as e:
        if len(unnamed) > form.usual or "" in unnamed or "" in named.values():
            raise EndpointError(f"{e}; {_ESCAPING}") from None
        raise
    return ":".join(
        [kind, *(f"{name}={endpoints.quoteStringArgument(v)}" for name, v in values.items())]
    )


def _unknownType(kind: str, known: Iterable[str], tcp: str) -> EndpointError:
    """
    @param tcp: A C{tcp:} description, with C{{port}} where the port goes.
    """
    if not kind:
        return EndpointError(f"it names no endpoint type (for example {tcp.format(port=9000)})")
    if kind.isdigit():
        return EndpointError(
            f"it names no endpoint type; for TCP port {kind} write {tcp.format(port=kind)}"
        )
    return EndpointError(f"unknown endpoint type '{kind}' (known: {', '.join(known)})")


def _pluginPrefixes(interface: type[Interface]) -> list[str]:
    plugins: Iterable[Any] = getPlugins(interface)
    return [str(plugin.prefix).lower() for plugin in plugins]


def checkServer(description: str) -> CheckedEndpoint:
    """
    Check a server endpoint description (C{haproxy:} included).

    @raise EndpointError: if Twisted's parser would refuse it, or the endpoint
        it builds could not listen for a reason the description shows.
    """
    prefix, _, inner = description.partition(":")
    if prefix.strip().lower() == "haproxy":
        return _proxied(inner)
    kind, unnamed, named = _split(description)
    form = _SERVER_FORMS.get(kind)
    if form is not None:
        return CheckedEndpoint(kind, _checkForm(kind, form, unnamed, named))
    plugins = _pluginPrefixes(IStreamServerEndpointStringParser)
    if kind in plugins:
        return CheckedEndpoint(kind, _retyped(description, kind), checked=False)
    known = dict.fromkeys([*_SERVER_FORMS, "haproxy", *plugins])
    raise _unknownType(kind, known, "tcp:{port}")


def _proxied(inner: str) -> CheckedEndpoint:
    """
    C{haproxy:INNER}: INNER is any other server description.
    """
    if not inner:
        raise EndpointError(
            "haproxy: needs the endpoint to listen on (for example haproxy:tcp:9001)"
        )
    wrapped = checkServer(inner)
    if wrapped.proxied:
        raise EndpointError("haproxy: is given twice; one PROXY header comes per connection")
    return CheckedEndpoint(wrapped.kind, wrapped.description, True, wrapped.checked)


def checkClient(description: str) -> CheckedEndpoint:
    """
    Check a client endpoint description (a C{tls:} one's C{endpoint=} too).

    @raise EndpointError: if Twisted's parser would refuse it, or the endpoint
        it builds could not connect for a reason the description shows.
    """
    kind, unnamed, named = _split(description)
    form = _CLIENT_FORMS.get(kind)
    if form is not None:
        return CheckedEndpoint(kind, _checkForm(kind, form, unnamed, named))
    plugins = _pluginPrefixes(IStreamClientEndpointStringParserWithReactor)
    if kind in plugins:
        return CheckedEndpoint(kind, _retyped(description, kind), checked=False)
    raise _unknownType(kind, dict.fromkeys([*_CLIENT_FORMS, *plugins]), "tcp:HOST:{port}")


def _retyped(description: str, kind: str) -> str:
    return kind + ":" + description.partition(":")[2]


def inheritedSocketMissing(error: LookupError) -> EndpointError:
    """
    What to say when Twisted's C{systemd:} parser finds no inherited socket
    of that index (C{IndexError}) or name (C{KeyError}).
    """
    if isinstance(error, KeyError):
        name = error.args[0] if error.args else ""
        return EndpointError(
            f"no inherited socket named '{name}' (is the process socket-activated, "
            f"with FileDescriptorName={name}?)"
        )
    return EndpointError("no such inherited socket (is the process socket-activated?)")
