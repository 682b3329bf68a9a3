"""SOAP 1.1 as the WSUS server-to-server protocol uses it (document/literal): reading a request or an answer into its
operation and a small tree, writing envelopes and faults. One place for both sides of the protocol.

Reading is defensive: bodies are size-bounded by the caller, a document type declaration (the door to entity
expansion) is refused before parsing, and the tree is read with defusedxml, so hostile XML is a clear error, never a
crash or a blow-up. Writing builds the text directly with escaping: answers are flat, and a list of 100,000 revisions
is written in one pass without building a tree.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import Final
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from upmirror.errors import UpmirrorError

SOAP_ENVELOPE: Final = "http://schemas.xmlsoap.org/soap/envelope/"
SERVER_SYNC: Final = "http://www.microsoft.com/SoftwareDistribution"
DSS_AUTH: Final = "http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService"
MONITORABLE: Final = "http://www.microsoft.com/SoftwareDistribution/Server/IMonitorable"
CONTENT_TYPE: Final = "text/xml; charset=utf-8"
GUID: Final = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The fault codes of MS-WSUSSS 2.2.9.3, and how a downstream reacts to each.
INVALID_PARAMETERS: Final = "InvalidParameters"
INVALID_COOKIE: Final = "InvalidCookie"
INTERNAL_SERVER_ERROR: Final = "InternalServerError"
INCOMPATIBLE_PROTOCOL_VERSION: Final = "IncompatibleProtocolVersion"
INVALID_AUTHORIZATION_COOKIE: Final = "InvalidAuthorizationCookie"
FILE_DIGESTS_MISSING: Final = "FileDigestsMissing"
SERVER_CHANGED: Final = "ServerChanged"
SERVER_BUSY: Final = "ServerBusy"


class SoapFault(UpmirrorError):
    """A SOAP fault: ``code`` is the ErrorCode of its detail (None when the fault carries none), ``message`` the
    human-readable text. An UpmirrorError, so one that escapes a downstream's session is one line, not a traceback."""

    def __init__(self, code: str | None, message: str, *, client_fault: bool = False) -> None:
        super().__init__(f"{code or 'fault'}: {message}")
        self.code = code
        self.message = message
        self.client_fault = client_fault  # soap:Client (the request was wrong) rather than soap:Server


class NotSoap(ValueError):
    """The body is not a SOAP envelope at all (a plain HTTP error answers it, not a fault)."""


def local(tag: str) -> str:
    """The local name of a ``{namespace}name`` tag."""
    return tag.rpartition("}")[2]


class Element:
    """A read-only view of a parsed element with the lookups the protocol needs, by local name (document/literal
    bodies qualify every element by the operation's namespace, which the operation already fixes)."""

    __slots__ = ("node",)

    def __init__(self, node: ET.Element) -> None:
        self.node = node

    @property
    def name(self) -> str:
        return local(self.node.tag)

    def child(self, name: str) -> Element | None:
        for node in self.node:
            if local(node.tag) == name:
                return Element(node)
        return None

    def children(self, name: str | None = None) -> Iterator[Element]:
        for node in self.node:
            if name is None or local(node.tag) == name:
                yield Element(node)

    def path(self, *names: str) -> Element | None:
        found: Element | None = self
        for name in names:
            found = found.child(name) if found is not None else None
        return found

    @property
    def text(self) -> str:
        return (self.node.text or "").strip()

    @property
    def verbatim(self) -> str:
        """The text as sent, surrounding white space included (an update's XML is kept to the character)."""
        return self.node.text or ""

    def text_of(self, *names: str, default: str = "") -> str:
        found = self.path(*names)
        return found.text if found is not None else default

    def bool_of(self, *names: str, default: bool = False) -> bool:
        value = self.text_of(*names)
        if not value:
            return default
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise SoapFault(INVALID_PARAMETERS, f"{'/'.join(names)} must be true or false, not {value[:40]!r}")

    def int_of(self, *names: str, default: int | None = None) -> int:
        value = self.text_of(*names)
        if not value and default is not None:
            return default
        try:
            return int(value)
        except ValueError:
            raise SoapFault(
                INVALID_PARAMETERS, f"{'/'.join(names)} must be a whole number, not {value[:40]!r}"
            ) from None

    def bytes_of(self, *names: str) -> bytes:
        return decode_base64(self.text_of(*names), "/".join(names))


def decode_base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SoapFault(INVALID_PARAMETERS, f"{what} is not base64") from None


def read_envelope(body: bytes) -> Element:
    """The first element of the envelope's Body: the operation of a request, the response or Fault of an answer.
    Raises NotSoap when ``body`` is not a SOAP 1.1 envelope."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise NotSoap("a document type declaration is not allowed in a SOAP message")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as error:
        raise NotSoap(f"the body is not well-formed XML ({error})") from None
    if root.tag != f"{{{SOAP_ENVELOPE}}}Envelope":
        raise NotSoap("the body is not a SOAP 1.1 envelope")
    body_element = next((node for node in root if node.tag == f"{{{SOAP_ENVELOPE}}}Body"), None)
    if body_element is None or len(body_element) == 0:
        raise NotSoap("the SOAP envelope has no body")
    return Element(body_element[0])


def raise_if_fault(operation: Element) -> None:
    """Raises the SoapFault an answer carries, if it is one."""
    if operation.node.tag != f"{{{SOAP_ENVELOPE}}}Fault":
        return
    detail = operation.child("detail") or operation.child("Detail")
    code = detail.text_of("ErrorCode") if detail is not None else ""
    message = (detail.text_of("Message") if detail is not None else "") or operation.text_of("faultstring")
    raise SoapFault(code or None, message or "the upstream answered a fault without a message")


# ---- writing ----


def text(value: str) -> str:
    return escape(value)


def element(name: str, value: str | int | bool | None) -> str:
    """``<name>value</name>`` with the value escaped; None is left out (minOccurs=0); booleans as XML spells them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def base64_element(name: str, value: bytes | None) -> str:
    return "" if value is None else f"<{name}>{base64.b64encode(value).decode()}</{name}>"


def envelope(operation: str, namespace: str, parts: Iterable[str]) -> Iterator[bytes]:
    """A SOAP 1.1 envelope whose body is ``<operation xmlns=namespace>`` holding ``parts`` (already XML), as UTF-8
    pieces, so a long answer streams."""
    yield (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENVELOPE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f'<soap:Body><{operation} xmlns="{namespace}">'
    ).encode()
    pending: list[str] = []
    size = 0
    for part in parts:
        pending.append(part)
        size += len(part)
        if size >= 1 << 16:
            yield "".join(pending).encode()
            pending.clear()
            size = 0
    pending.append(f"</{operation}></soap:Body></soap:Envelope>")
    yield "".join(pending).encode()


def fault_envelope(fault: SoapFault) -> bytes:
    """The SOAP 1.1 fault of MS-WSUSSS 2.2.9.1: faultcode, faultstring, and a detail with ErrorCode, Message and a
    fault ID, unqualified."""
    side = "soap:Client" if fault.client_fault else "soap:Server"
    detail = (
        "<detail>"
        + element("ErrorCode", fault.code)
        + element("Message", fault.message)
        + element("ID", str(uuid.uuid4()))
        + "</detail>"
        if fault.code
        else ""
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENVELOPE}"><soap:Body><soap:Fault>'
        f"<faultcode>{side}</faultcode>{element('faultstring', fault.message)}{detail}"
        "</soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


# ---- update identities, the protocol's name of one revision of one update ----


def update_identity(update_id: str, revision: int, *, tag: str = "UpdateIdentity") -> str:
    return f"<{tag}><UpdateID>{update_id}</UpdateID><RevisionNumber>{revision}</RevisionNumber></{tag}>"


def read_update_identities(listed: Element | None) -> list[tuple[str, int]]:
    """The (update id, revision) of each UpdateIdentity in ``listed``; an id that is not a GUID is a bad parameter."""
    refs = []
    for item in listed.children("UpdateIdentity") if listed is not None else ():
        update_id = item.text_of("UpdateID").lower()
        if not GUID.fullmatch(update_id):
            raise SoapFault(INVALID_PARAMETERS, f"UpdateID {update_id[:60]!r} is not a GUID")
        refs.append((update_id, item.int_of("RevisionNumber")))
    return refs
