"""
The PEM files an endpoint description names, checked before Twisted loads
them.

Twisted reads them with pyOpenSSL while it parses the description, and a
wrong file ends in a traceback whose last line is OpenSSL's (C{[('PEM
routines', '', 'no start line')]}) and names neither the file nor what is
wrong with it.  Each check here reads a file as Twisted will, and says in
one sentence which file holds what instead of what it should.
"""

from __future__ import annotations

import os
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)
# What OpenSSL's PEM_read_bio_X509 takes for a certificate.
_CERTIFICATE_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE")


class UnusableFileError(ValueError):
    """
    A file named in an endpoint description cannot serve; the message is one
    sentence that names it and the problem.
    """


def _read(parameter: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UnusableFileError(f"{parameter} file '{path}' cannot be read: {e.strerror}") from None


def _blocks(data: bytes, labels: tuple[bytes, ...]) -> list[bytes]:
    return [m.group(0) for m in _BLOCK.finditer(data) if m.group(1) in labels]


def _isKeyLabel(label: bytes) -> bool:
    return label.endswith(b"PRIVATE KEY")


def _holds(data: bytes) -> str:
    """
    What a file holds, in words: C{it holds: CERTIFICATE}.
    """
    labels = dict.fromkeys(m.group(1).decode("ascii") for m in _BLOCK.finditer(data))
    return "it holds: " + ", ".join(labels) if labels else "it holds no PEM data"


def _keyIn(parameter: str, path: str, data: bytes) -> PrivateKeyTypes | None:
    """
    The first private key in C{data} (as OpenSSL takes the first), or
    C{None} if it holds none.
    """
    found = [m.group(0) for m in _BLOCK.finditer(data) if _isKeyLabel(m.group(1))]
    return _loadKey(parameter, path, found[0]) if found else None


def _loadKey(parameter: str, path: str, block: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(block, password=None)
    except TypeError:
        # Twisted gives OpenSSL no passphrase: on a terminal OpenSSL would
        # prompt for one in the middle of start-up, elsewhere it fails.
        raise UnusableFileError(
            f"{parameter} file '{path}' holds an encrypted private key; decrypt it first "
            f"(openssl pkey -in {path} -out key.pem)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise UnusableFileError(
            f"{parameter} file '{path}' holds a private key that cannot be loaded "
            "(damaged, or of a kind OpenSSL does not know)"
        ) from None


def _certificatesIn(parameter: str, path: str, data: bytes) -> list[x509.Certificate]:
    return [_loadCertificate(parameter, path, b) for b in _blocks(data, _CERTIFICATE_LABELS)]


def _loadCertificate(parameter: str, path: str, block: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block)
    except ValueError:
        raise UnusableFileError(
            f"{parameter} file '{path}' holds a certificate that cannot be loaded (damaged?)"
        ) from None


def _publicBytes(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _checkMatch(
    certificate: x509.Certificate, certPath: str, key: PrivateKeyTypes, keyPath: str
) -> None:
    if _publicBytes(certificate.public_key()) != _publicBytes(key.public_key()):
        raise UnusableFileError(
            f"the certificate in '{certPath}' does not match the private key in '{keyPath}' "
            "(it was made for another key)"
        )


def checkKeyAndCertificate(
    keyParameter: str, keyPath: str, certParameter: str, certPath: str | None
) -> None:
    """
    A private key and the certificate that goes with it, as Twisted loads
    them: the certificate from C{certPath}, or from the key's own file when
    C{certPath} is C{None}.

    @raise UnusableFileError: if a file cannot be read, holds no key or no
        certificate, or the two do not belong together.
    """
    keyData = _read(keyParameter, keyPath)
    key = _keyIn(keyParameter, keyPath, keyData)
    if key is None:
        raise UnusableFileError(
            f"{keyParameter} file '{keyPath}' holds no private key ({_holds(keyData)})"
        )
    if certPath is None:
        certificates = _certificatesIn(keyParameter, keyPath, keyData)
        if not certificates:
            raise UnusableFileError(
                f"{keyParameter} file '{keyPath}' holds no certificate, and no {certParameter}= "
                f"names one; add {certParameter}=CERT.pem"
            )
        _checkMatch(certificates[0], keyPath, key, keyPath)
        return
    certData = _read(certParameter, certPath)
    certificates = _certificatesIn(certParameter, certPath, certData)
    if not certificates:
        raise UnusableFileError(
            f"{certParameter} file '{certPath}' holds no certificate ({_holds(certData)})"
        )
    _checkMatch(certificates[0], certPath, key, keyPath)


def checkCertificateAndKey(
    certParameter: str, certPath: str, keyParameter: str, keyPath: str | None
) -> None:
    """
    A client certificate and its key, as Twisted loads them: the key from
    C{keyPath}, or from the certificate's own file when C{keyPath} is
    C{None}.

    @raise UnusableFileError: as L{checkKeyAndCertificate}.
    """
    if keyPath is not None:
        checkKeyAndCertificate(keyParameter, keyPath, certParameter, certPath)
        return
    data = _read(certParameter, certPath)
    certificates = _certificatesIn(certParameter, certPath, data)
    if not certificates:
        raise UnusableFileError(
            f"{certParameter} file '{certPath}' holds no certificate ({_holds(data)})"
        )
    key = _keyIn(certParameter, certPath, data)
    if key is None:
        raise UnusableFileError(
            f"{certParameter} file '{certPath}' holds no private key, and no {keyParameter}= "
            f"names one; add {keyParameter}=KEY.pem"
        )
    _checkMatch(certificates[0], certPath, key, certPath)


def checkCertificates(parameter: str, path: str) -> None:
    """
    A file of one or more certificates (a chain).

    @raise UnusableFileError: if it cannot be read or holds no certificate.
    """
    data = _read(parameter, path)
    if not _certificatesIn(parameter, path, data):
        raise UnusableFileError(f"{parameter} file '{path}' holds no certificate ({_holds(data)})")


def checkDHParameters(parameter: str, path: str) -> None:
    """
    A file of Diffie-Hellman parameters.  Twisted only gives OpenSSL its
    name, and OpenSSL reads it at the first connection.

    @raise UnusableFileError: if it cannot be read or holds no DH parameters.
    """
    data = _read(parameter, path)
    found = _blocks(data, (b"DH PARAMETERS",))
    try:
        if found:
            serialization.load_pem_parameters(found[0])
            return
    except (ValueError, UnsupportedAlgorithm):
        pass
    raise UnusableFileError(
        f"{parameter} file '{path}' holds no DH parameters ({_holds(data)}); "
        "make them with: openssl dhparam -out dh.pem 2048"
    )


def _isPEMName(name: str) -> bool:
    # The test Twisted's _loadCAsFromDir applies to each file's name.
    return name.split(".")[-1].lower() == "pem"


def checkTrustRoots(parameter: str, path: str) -> None:
    """
    A folder of CA certificates, every C{*.pem} file of which Twisted loads
    as a certificate: a key or anything else there stops it with OpenSSL's
    traceback, and a folder without one trusts no server at all.

    @raise UnusableFileError: if it is no folder, or one of its C{.pem} files
        holds no certificate, or none does.
    """
    if not os.path.isdir(path):
        problem = "is a file" if os.path.exists(path) else "does not exist"
        raise UnusableFileError(
            f"{parameter} must name a folder of CA certificates (*.pem), and '{path}' {problem}"
        )
    try:
        names = sorted(filter(_isPEMName, os.listdir(path)))
    except OSError as e:
        raise UnusableFileError(
            f"{parameter} folder '{path}' cannot be read: {e.strerror}"
        ) from None
    trusted = 0
    for name in names:
        try:
            with open(os.path.join(path, name), "rb") as f:
                data = f.read()
        except OSError:
            continue  # Twisted skips what it cannot read.
        where = os.path.join(path, name)
        if not _certificatesIn(parameter, where, data):
            raise UnusableFileError(
                f"{parameter} folder '{path}' holds '{name}', which is no certificate "
                f"({_holds(data)}); keep only CA certificates there"
            )
        trusted += 1
    if not trusted:
        raise UnusableFileError(
            f"{parameter} folder '{path}' holds no CA certificate (only files named *.pem count)"
        )


def checkServingFolder(parameter: str, path: str) -> None:
    """
    The folder of keys and certificates that Twisted's C{tls:} server
    endpoint serves, by the names in each certificate: every C{.pem} file
    in it, and in its subfolders, read as Twisted reads it (a block that is
    not a certificate must be a private key), and at least one certificate
    with its key.

    @raise UnusableFileError: if it is no folder, one of its files cannot be
        loaded, or no key has its certificate there.
    """
    if not os.path.isdir(path):
        problem = "is a file" if os.path.exists(path) else "does not exist"
        raise UnusableFileError(
            f"{parameter} must name a folder of keys and certificates (*.pem), "
            f"and '{path}' {problem}"
        )
    keys: list[bytes] = []
    named: set[bytes] = set()  # the public keys of certificates with DNS names
    for folder, _, names in os.walk(path, followlinks=True):
        for name in sorted(n for n in names if n.endswith(".pem")):
            where = os.path.join(folder, name)
            data = _read(parameter, where)
            for match in _BLOCK.finditer(data):
                label, block = match.group(1), match.group(0)
                # Twisted loads a block as a certificate if its BEGIN line
                # says CERTIFICATE, and as a key otherwise.
                if b"CERTIFICATE" in label:
                    certificate = _loadCertificate(parameter, where, block)
                    if _dnsNames(certificate):
                        named.add(_publicBytes(certificate.public_key()))
                elif _isKeyLabel(label):
                    keys.append(_publicBytes(_loadKey(parameter, where, block).public_key()))
                else:
                    raise UnusableFileError(
                        f"{parameter} folder '{path}' holds '{where}', with a "
                        f"{label.decode('ascii')} in it; only certificates and private keys "
                        "may be there"
                    )
    if not named.intersection(keys):
        # Twisted serves each certificate by the DNS names in its
        # subjectAltName, and only with its key.
        raise UnusableFileError(
            f"{parameter} folder '{path}' holds no private key together with its "
            "certificate for a DNS name (subjectAltName), so it can serve no name"
        )


def _dnsNames(certificate: x509.Certificate) -> list[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return names.value.get_values_for_type(x509.DNSName)
