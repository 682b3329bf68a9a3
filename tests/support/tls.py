"""Real TLS for tests: a private CA and a server certificate for 127.0.0.1 from trustme, the CA written as a PEM
bundle a client can be told to trust."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass
class TestPki:
    ca_file: Path
    server_context: ssl.SSLContext
    certificate_file: Path
    key_file: Path


def make_pki(directory: Path) -> TestPki:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    certificate_file, key_file = directory / "server-cert.pem", directory / "server-key.pem"
    certificate.private_key_pem.write_to_path(str(key_file))
    for index, blob in enumerate(certificate.cert_chain_pems):
        blob.write_to_path(str(certificate_file), append=index > 0)
    return TestPki(ca_file=ca_file, server_context=context, certificate_file=certificate_file, key_file=key_file)
