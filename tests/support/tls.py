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


def make_pki(directory: Path) -> TestPki:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = directory / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TestPki(ca_file=ca_file, server_context=context)
