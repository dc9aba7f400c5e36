"""
A self-signed certificate for localhost, made at run time.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class SelfSigned:
    """
    A key and a certificate for C{localhost} and 127.0.0.1, valid for a day,
    in PEM form, and written to C{key.pem} and C{cert.pem} in C{directory}.
    """

    def __init__(self, directory: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.keyPEM = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.certPEM = certificate.public_bytes(serialization.Encoding.PEM)
        directory.mkdir(parents=True, exist_ok=True)
        self.key = (directory / "key.pem").absolute()
        self.cert = (directory / "cert.pem").absolute()
        self.key.write_bytes(self.keyPEM)
        self.cert.write_bytes(self.certPEM)

    def endpoint(self, port: int = 0) -> str:
        """
        The C{ssl:} server endpoint description that serves this certificate.
        """
        return f"ssl:{port}:interface=127.0.0.1:privateKey={self.key}:certKey={self.cert}"


def atMostTLS12(directory: Path) -> dict[str, str]:
    """
    The environment for a process whose OpenSSL (pyOpenSSL's own as well)
    negotiates TLS 1.2 at most, through an C{OPENSSL_CONF} file written to
    C{directory}: how a user holds a server to TLS 1.2 without options.
    """
    directory.mkdir(parents=True, exist_ok=True)
    config = (directory / "openssl.cnf").absolute()
    config.write_text(
        "openssl_conf = default_conf\n"
        "[default_conf]\n"
        "ssl_conf = ssl_sect\n"
        "[ssl_sect]\n"
        "system_default = system_default_sect\n"
        "[system_default_sect]\n"
        "MaxProtocol = TLSv1.2\n"
    )
    return dict(os.environ, OPENSSL_CONF=str(config))


class TLSMistakes:
    """
    The files of the usual TLS mistakes, beside a good pair, in
    C{directory}: C{good} (a L{SelfSigned}), C{other} (another pair, whose
    certificate does not match C{good}'s key), C{encryptedKey} (C{good}'s
    key under a passphrase), C{trustRoots} (a folder holding C{good}'s
    certificate), C{trustRootsWithKey} (the same with the key beside it), and
    C{serving} (C{good}'s key and certificate in one file in a folder, as
    Twisted's C{tls:} server endpoint reads them).
    """

    def __init__(self, directory: Path) -> None:
        self.good = SelfSigned(directory / "good")
        self.other = SelfSigned(directory / "other")
        self.encryptedKey = directory / "encrypted.pem"
        key = serialization.load_pem_private_key(self.good.keyPEM, password=None)
        self.encryptedKey.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        self.trustRoots = directory / "trust"
        self.trustRoots.mkdir()
        (self.trustRoots / "ca.pem").write_bytes(self.good.certPEM)
        self.trustRootsWithKey = directory / "trust-with-key"
        self.trustRootsWithKey.mkdir()
        (self.trustRootsWithKey / "ca.pem").write_bytes(self.good.certPEM)
        (self.trustRootsWithKey / "key.pem").write_bytes(self.good.keyPEM)
        self.serving = directory / "serving"
        self.serving.mkdir()
        (self.serving / "localhost.pem").write_bytes(self.good.keyPEM + self.good.certPEM)
