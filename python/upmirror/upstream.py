"""The client side of the sync protocol: how a downstream server talks to its upstream server, through the one
native HTTP client (TLS, proxy and its Basic-authentication rule, bearer token, per-host connection cap).

Metadata calls are retried by the client's one retry policy (the download engine's: transient failures, 429 and
500/502/503/504, exponential backoff with full jitter, Retry-After up to its cap); a 4xx is the upstream refusing the
request and is reported at once with its message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeVar

from upmirror._native import (
    RETRYABLE_STATUSES,
    HttpClient,
    HttpError,
    HttpResponse,
    ProxyAuthenticationError,
    UnreachableError,
    content_relative_path,
)
from upmirror.errors import UpmirrorError, one_line
from upmirror.model import (
    MSGPACK,
    PROTOCOL_VERSION,
    ApprovalsRequest,
    ApprovalsResponse,
    CategoriesResponse,
    DriversRequest,
    FileRef,
    RevisionRef,
    RevisionsRequest,
    RevisionsResponse,
    ServerInfo,
    Update,
    UpdatesRequest,
    UpdatesResponse,
    decode_msgpack,
    msgpack_encoder,
)
from upmirror.options import Options

T = TypeVar("T")

RETRYABLE_STATUS: Final = RETRYABLE_STATUSES


class UpstreamError(UpmirrorError):
    """The upstream server refused a request or answered something upmirror cannot use; ``status`` is the HTTP
    status of a refusal (None for an answer that could not be used)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerChangedError(UpstreamError):
    """The upstream says it is another server now (MS-WSUSSS ServerChanged): every anchor must be reset and the sync
    made in full."""


class UpstreamUnreachableError(UpstreamError):
    """The upstream could not be reached (after retries): WSUS tries again later rather than failing for good."""


def build_client(options: Options) -> HttpClient:
    """The HTTP client a downstream server syncs with, from its options (the proxy is used only while syncing)."""
    proxy = options.proxy
    transfer = options.transfer
    return HttpClient(
        ca_file=options.source.ca_file or None,
        verify_tls=options.source.verify_tls,
        proxy_url=f"http://{proxy.host}:{proxy.port}" if proxy.enabled else None,
        proxy_user=(proxy.user or None) if proxy.enabled else None,
        proxy_domain=(proxy.domain or None) if proxy.enabled else None,
        proxy_password=(proxy.password or None) if proxy.enabled else None,
        allow_basic_auth=proxy.allow_basic_auth,
        bearer_token=options.source.token or None,
        connect_timeout=transfer.connect_timeout_seconds,
        read_timeout=transfer.read_timeout_seconds,
        max_connections_per_host=transfer.connections,
    )


class Upstream:
    """One upstream server, as its downstream sees it."""

    def __init__(self, options: Options, client: HttpClient | None = None) -> None:
        self.base = options.source.upstream
        self.client = client or build_client(options)
        self.retries = options.transfer.retries
        self.info: ServerInfo | None = None  # asked once per sync (protocol detection asks it first)

    def _call(self, method: str, path: str, kind: type[T], body: object | None = None) -> T:
        url = f"{self.base}{path}"
        payload = None if body is None else msgpack_encoder.encode(body)
        headers = {"accept": MSGPACK, **({"content-type": MSGPACK} if payload is not None else {})}
        response = self.send(method, url, payload, headers)
        if response.status != 200:
            message = one_line(response.body[:500].decode("utf-8", "replace").strip()) or f"HTTP {response.status}"
            if response.status == 401:
                message += " (set source.token to a token issued by the upstream: `upmirror tokens add NAME` there)"
            raise UpstreamError(f"{method} {url} answered {response.status}: {message}", response.status)
        try:
            return decode_msgpack(response.body, kind)
        except UpmirrorError as error:
            raise UpstreamError(f"{method} {url} answered something unusable: {error}") from None

    def send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        retry_status: frozenset[int] = RETRYABLE_STATUS,
    ) -> HttpResponse:
        """One request with the retries of metadata calls (the WSUS protocol client sends through this too, with its
        own ``retry_status``: a SOAP fault is an HTTP 500 that answers the call)."""
        try:
            return self.client.request(method, url, body, headers, retries=self.retries, retry_statuses=retry_status)
        except ProxyAuthenticationError:
            raise  # a configuration problem, not retried: the message names the proxy
        except HttpError as error:
            # An UnreachableError names what could not be reached: the upstream, or the proxy.
            reason = str(error) if isinstance(error, UnreachableError) else f"upstream {self.base} unreachable: {error}"
            raise UpstreamUnreachableError(reason) from None

    def download_files(self, sha1s: Sequence[str]) -> bool:
        """An upmirror upstream has no call to ask for files it lacks (a WSUS upstream has: DownloadFiles): False."""
        del sha1s
        return False

    def server_info(self) -> ServerInfo:
        if self.info is not None:
            return self.info
        info = self.info = self._call("GET", "/api/v1/server", ServerInfo)
        if info.protocol_version != PROTOCOL_VERSION:
            raise UpstreamError(
                f"upstream {self.base} speaks protocol version {info.protocol_version}; this server speaks "
                f"{PROTOCOL_VERSION} (a downstream must run the same or an older version than its upstream)"
            )
        return info

    def categories(self, anchor: str) -> CategoriesResponse:
        return self._call("GET", f"/api/v1/categories?anchor={anchor}", CategoriesResponse)

    def revisions(self, request: RevisionsRequest) -> RevisionsResponse:
        return self._call("POST", "/api/v1/revisions", RevisionsResponse, request)

    def updates(self, revisions: Sequence[RevisionRef]) -> list[Update]:
        return self._call("POST", "/api/v1/updates", UpdatesResponse, UpdatesRequest(revisions=list(revisions))).updates

    def decryption_keys_of(self, updates: Sequence[Update]) -> dict[str, bytes]:
        """The keys of encrypted files among these updates: upmirror's protocol carries none (a WSUS upstream does:
        GetUpdateDecryptionData)."""
        del updates
        return {}

    def approvals(self, anchor: str) -> ApprovalsResponse:
        return self._call("POST", "/api/v1/approvals", ApprovalsResponse, ApprovalsRequest(anchor=anchor))

    def drivers(self, request: DriversRequest) -> RevisionsResponse:
        return self._call("POST", "/api/v1/drivers", RevisionsResponse, request)

    def content_url(self, file: FileRef) -> str:
        """The URL of a file on the upstream, built from its digest as WSUS does."""
        return f"{self.base}/Content/{content_relative_path(file.sha1, file.extension)}"
