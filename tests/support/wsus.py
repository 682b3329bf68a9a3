"""A WSUS downstream server as the tests drive one: zeep, an independent SOAP client, builds every request from a
WSDL written from the MS-WSUSSS specification (tests/fixtures/wsusss/) and checks every answer against its types.
And a wsusutil package as a WSUS server writes one, made of the hand-written update XML of the core's tests (a
detectoid, categories at revisions above 1, a bundle, the leaf update it carries, a superseding update)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
import zeep.exceptions
from defusedxml.ElementTree import fromstring
from zeep.transports import Transport

from upmirror import _native

FIXTURES = Path(__file__).parent.parent / "fixtures" / "wsusss"
UPDATE_XML = Path(__file__).resolve().parent.parent.parent / "rust" / "core" / "tests" / "fixtures" / "wsus"
# The lines of the WSUS-shaped package, in the order a WSUS export has them (detectoids, then categories, updates).
PACKAGE_FIXTURES = (
    "detectoid",
    "category-classification",
    "category-company",
    "category-product-family",
    "category-product",
    "bundle",
    "leaf-update",
    "superseding",
)
DETECTOID = "59653007-e2e9-4f71-8525-2ff588527978"
UPDATE_NS = {"upd": "http://schemas.microsoft.com/msus/2002/12/Update"}
SYNC_PATH = "/ServerSyncWebService/ServerSyncWebService.asmx"
AUTH_PATH = "/DssAuthWebService/DssAuthWebService.asmx"
SYNC_BINDING = "{http://www.microsoft.com/SoftwareDistribution}ServerSyncWebServiceSoap"
AUTH_BINDING = "{http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService}DssAuthWebServiceSoap"


class WsusDownstream:
    """What a WSUS downstream server does, one operation at a time, through zeep."""

    def __init__(self, url: str, token: str | None) -> None:
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        transport = Transport(session=self.session, timeout=30, operation_timeout=60)
        self.sync = zeep.Client(str(FIXTURES / "ServerSyncWebService.wsdl"), transport=transport).create_service(
            SYNC_BINDING, url + SYNC_PATH
        )
        self.auth = zeep.Client(str(FIXTURES / "DssAuthWebService.wsdl"), transport=transport).create_service(
            AUTH_BINDING, url + AUTH_PATH
        )
        self.cookie: Any = None

    def authenticate(self) -> Any:
        config = self.sync.GetAuthConfig()
        plug_in = config.AuthInfo.AuthPlugInInfo[0]
        assert (plug_in.PlugInID, plug_in.ServiceUrl) == ("DssTargeting", AUTH_PATH.lstrip("/"))
        authorization = self.auth.GetAuthorizationCookie(
            accountName="branch.example.test", accountGuid="3f2504e0-4f89-41d3-9a0c-0305e82c3301"
        )
        self.cookie = self.sync.GetCookie(
            authCookies={"AuthorizationCookie": [authorization]}, oldCookie=None, protocolVersion="1.20"
        )
        return self.cookie


def fault_code(raised: pytest.ExceptionInfo[zeep.exceptions.Fault]) -> str:
    detail = raised.value.detail
    assert detail is not None, "a fault of the protocol carries a detail"
    return str(detail.findtext("ErrorCode"))


@dataclass(frozen=True)
class WsusShapedPackage:
    path: Path
    # Fixture name -> its update XML, as the package holds it.
    xmls: dict[str, str]
    # metadata.txt's lines.
    lines: list[str]


def identity_of(xml: str) -> tuple[str, int]:
    """(update id, revision) of update XML, read with Python's own XML parser."""
    identity = fromstring(xml).find("upd:UpdateIdentity", UPDATE_NS)
    assert identity is not None
    return identity.get("UpdateID", ""), int(identity.get("RevisionNumber", "0"))


def wsus_line(xml: str) -> str:
    """One line of metadata.txt as the wsusutil format describes it (length in UTF-16 code units)."""
    update_id, revision = identity_of(xml)
    return f"{update_id},{revision:08x},{len(xml.encode('utf-16-le')) // 2:08x},{xml}\r\n"


def write_wsus_shaped_package(path: Path) -> WsusShapedPackage:
    """Writes at ``path`` the package a WSUS server would export holding the fixtures (and the second product the
    bundle names, made with the core's writer)."""
    xmls = {name: (UPDATE_XML / f"{name}.xml").read_text() for name in PACKAGE_FIXTURES}
    other_product = _native.encode_update_xml(
        {
            "update_id": "a3c2375d-0c8a-42f9-bce0-28333e198407",
            "revision_number": 5,
            "update_type": "Category",
            "category_type": "Product",
            "localized_properties": [{"language": "en", "title": "Windows 10"}],
            "category_groups": [["6964aab4-c5b5-43bd-a17d-ffb4346a8e1d"]],
        }
    )
    lines = [wsus_line(xmls[name]) for name in PACKAGE_FIXTURES[:5]] + [wsus_line(other_product)]
    lines += [wsus_line(xmls[name]) for name in PACKAGE_FIXTURES[5:]]
    entries = "".join(
        '<Update UpdateId="{}" RevisionNumber="{}"/>'.format(*identity_of(line.split(",", 3)[3])) for line in lines
    )
    document = (
        '<?xml version="1.0" encoding="utf-8"?><ExportPackage ServerID="s" FormatVersion="1.0" '
        f'ProtocolVersion="1.20"><Updates>{entries}</Updates></ExportPackage>'
    )
    path.write_bytes(
        _native.write_cabinet([("metadata.txt", "".join(lines).encode()), ("package.xml", document.encode())])
    )
    return WsusShapedPackage(path, xmls, lines)
