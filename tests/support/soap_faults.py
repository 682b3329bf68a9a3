"""A fault-injecting HTTP proxy in front of a real WSUS-protocol upstream (``upmirror serve``): a threaded HTTP server
on 127.0.0.1 that forwards every request to the upstream (SOAP calls and /Content alike) and, as planned, answers
chosen SOAP operations itself, with a fault or with a malformed answer. It counts what it saw per operation (the
operation's name is read from the request body), the update ids of each GetUpdateData and the digests DownloadFiles
asked for, so a test can check what the downstream did, independently of upmirror's own accounting.

``with SoapFaultProxy(server.url) as proxy:`` serves on ``proxy.url``; ``proxy.plan("GetUpdateData", "ServerBusy",
times=2)`` answers the next two GetUpdateData calls with that fault, then forwards again (``after=N`` forwards N calls
first). A planned answer is a fault code (``ServerBusy``, ``InvalidCookie``, ``ServerChanged``,
``InternalServerError``, any other word) or one of ``MALFORMED``.
"""

from __future__ import annotations

import base64
import http.client
import re
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

from defusedxml.ElementTree import fromstring

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
# Malformed answers: a body that is not XML; a GetUpdateData whose compressed blobs are not cabinets; update XML
# that is not update XML; a GetUpdateDecryptionData without its keys; an answer above what a client should accept
# (OVERSIZED_BYTES of padding: WSUS's largest answers, unpaged revision lists, are a few MB).
MALFORMED = ("not-xml", "bad-cabinet", "not-update-xml", "no-decryption-key", "oversized")
OVERSIZED_BYTES = 96 << 20
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
)


@dataclass
class Plan:
    answer: str
    times: int
    after: int


def fault_body(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body><soap:Fault>'
        f"<faultcode>soap:Server</faultcode><faultstring>{message}</faultstring>"
        f"<detail><ErrorCode>{code}</ErrorCode><Message>{message}</Message><ID>planned</ID></detail>"
        "</soap:Fault></soap:Body></soap:Envelope>"
    ).encode()


def operation_of(body: bytes) -> tuple[str, object | None]:
    """The operation a SOAP request calls (the local name of the Body's first element) and that element."""
    try:
        root = fromstring(body)
    except Exception:
        return "?", None
    found = root.find(f"{{{SOAP}}}Body")
    if found is None or len(found) == 0:
        return "?", None
    return found[0].tag.rpartition("}")[2], found[0]


def texts(element: object, name: str) -> list[str]:
    return [node.text or "" for node in element.iter() if node.tag.rpartition("}")[2] == name]  # type: ignore[attr-defined]


def spoil(answer: str, body: bytes) -> bytes:
    """The upstream's real answer, made malformed as planned."""
    if answer == "not-xml":
        return b"<<<this is not XML at all>>>"
    if answer == "bad-cabinet":
        junk = base64.b64encode(b"MSCF but not a cabinet " * 8)
        if b"<XmlUpdateBlobCompressed>" in body:
            return re.sub(rb"<XmlUpdateBlobCompressed>[^<]*<", b"<XmlUpdateBlobCompressed>" + junk + b"<", body)
        return re.sub(
            rb"<XmlUpdateBlob>[^<]*</XmlUpdateBlob>",
            b"<XmlUpdateBlobCompressed>" + junk + b"</XmlUpdateBlobCompressed>",
            body,
        )
    if answer == "no-decryption-key":
        return re.sub(rb"<DecryptionKey>[^<]*</DecryptionKey>", b"", body)
    if answer == "not-update-xml":
        return re.sub(rb"<XmlUpdateBlob>[^<]*<", b"<XmlUpdateBlob>&lt;recipe&gt;soup&lt;/recipe&gt;<", body)
    raise AssertionError(f"unknown malformed answer {answer!r}")


class SoapFaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.scheme == "http", "the proxy forwards to a plain HTTP upstream"
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.lock = threading.Lock()
        self.plans: dict[str, Plan] = {}
        self.calls: Counter[str] = Counter()  # every SOAP call seen, by operation
        self.bodies: list[tuple[str, bytes]] = []  # every SOAP request seen, in order: (operation, body)
        self.planned: Counter[str] = Counter()  # the calls answered as planned instead of forwarded
        self.update_ids: list[list[str]] = []  # the ids of each GetUpdateData forwarded
        self.downloads_asked: list[str] = []  # SHA-1 digests (hex) of every DownloadFiles
        self.content: Counter[str] = Counter()  # /Content paths requested
        # Calls of an operation held until that many are under way at once (``gather``), and whether they were.
        self.gathering: dict[str, threading.Barrier] = {}
        self.gathered: dict[str, bool] = {}
        self.gather_after: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, operation: str, answer: str, *, times: int = 1, after: int = 0) -> None:
        with self.lock:
            self.plans[operation] = Plan(answer, times, after)

    def reset(self) -> None:
        with self.lock:
            self.plans.clear()
            self.calls.clear()
            self.bodies.clear()
            self.planned.clear()
            self.update_ids.clear()
            self.downloads_asked.clear()
            self.content.clear()

    def __enter__(self) -> SoapFaultProxy:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def gather(self, operation: str, calls: int, *, after: int = 0, timeout: float = 20) -> None:
        """Holds ``calls`` calls of ``operation`` (after forwarding ``after`` of them) until all of them are under way
        at once; a client that sends them one after another leaves the first waiting until ``timeout``, and
        ``gathered[operation]`` is False."""
        with self.lock:
            self.gathering[operation] = threading.Barrier(calls, timeout=timeout)
            self.gather_after[operation] = after

    def wait_for_the_others(self, operation: str) -> None:
        with self.lock:
            barrier = self.gathering.get(operation)
            if barrier is not None and self.gather_after.get(operation, 0) > 0:
                self.gather_after[operation] -= 1
                return
        if barrier is None:
            return
        try:
            barrier.wait()
            gathered = True
        except threading.BrokenBarrierError:
            gathered = False
        with self.lock:
            self.gathering.pop(operation, None)
            self.gathered[operation] = self.gathered.get(operation, True) and gathered

    def planned_answer(self, operation: str, body: bytes) -> str | None:
        """The answer planned for this call of ``operation`` (counted), or None to forward it."""
        with self.lock:
            self.calls[operation] += 1
            self.bodies.append((operation, body))
            plan = self.plans.get(operation)
            if plan is None or plan.times <= 0:
                return None
            if plan.after > 0:
                plan.after -= 1
                return None
            plan.times -= 1
            self.planned[operation] += 1
            return plan.answer

    def record(self, operation: str, element: object | None) -> None:
        with self.lock:
            if operation == "GetUpdateData" and element is not None:
                self.update_ids.append([i.lower() for i in texts(element, "UpdateID")])
            elif operation == "DownloadFiles" and element is not None:
                self.downloads_asked += [base64.b64decode(d).hex() for d in texts(element, "base64Binary")]

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None) -> tuple:  # type: ignore[type-arg]
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body or b"")))
            connection.endheaders(body)
            reply = connection.getresponse()
            data = reply.read()
            kept = [(n, v) for n, v in reply.getheaders() if n.lower() not in HOP_BY_HOP | {"content-length"}]
            return reply.status, kept, data
        finally:
            connection.close()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                operation = "?"
                planned = None
                element = None
                if self.command == "POST" and body:
                    operation, element = operation_of(body)
                    planned = proxy.planned_answer(operation, body)
                elif self.path.startswith("/Content/"):
                    with proxy.lock:
                        proxy.content[self.path] += 1
                if planned is not None and planned not in MALFORMED:
                    self.answer(500, [("Content-Type", "text/xml; charset=utf-8")], fault_body(planned, "planned"))
                    return
                if planned == "oversized":
                    self.oversized(operation)
                    return
                proxy.record(operation, element)
                proxy.wait_for_the_others(operation)
                status, headers, data = proxy.forward(self.command, self.path, list(self.headers.items()), body)
                if planned is not None:
                    data = spoil(planned, data)
                self.answer(status, headers, data)

            def answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("server", "date"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def oversized(self, operation: str) -> None:
                """A well-formed answer of ``operation`` padded with an XML comment to OVERSIZED_BYTES."""
                head = (
                    f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
                    f'<{operation}Response xmlns="http://www.microsoft.com/SoftwareDistribution"><!--'
                ).encode()
                tail = f"--></{operation}Response></soap:Body></soap:Envelope>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(head) + OVERSIZED_BYTES + len(tail)))
                self.end_headers()
                try:
                    self.wfile.write(head)
                    block = b" " * (1 << 20)
                    for _ in range(OVERSIZED_BYTES >> 20):
                        self.wfile.write(block)
                    self.wfile.write(tail)
                except OSError:
                    self.close_connection = True  # the client stopped reading: what it should do

            do_GET = do_POST = do_HEAD = handle_any

        return Handler
