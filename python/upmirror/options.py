"""A server's options: the Options page of the WSUS console as a TOML file (``upmirror.toml``), with defaults from
the specification, validation that names the offending value and what is allowed, and the server directory layout.

The file holds secrets (the upstream token, the proxy password), so it is always written with mode 0600, and
``redacted()`` is the only form in which options are ever shown.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect
import tomli_w

from upmirror import wsus
from upmirror._native import (
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_CONNECTIONS,
    DEFAULT_READ_TIMEOUT_SECONDS,
    DEFAULT_RETRIES,
    HttpClient,
)
from upmirror.errors import InputError, one_line

OPTIONS_FILE: Final = "upmirror.toml"
DATABASE_FILE: Final = "upmirror.db"
SECRET_FIELDS: Final = frozenset({"source.token", "proxy.password"})
REDACTED: Final = "********"
# source.upstream for Microsoft Update's server sync service.
MICROSOFT_UPDATE: Final = "microsoft-update"

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]

# A host name (RFC 1123 labels) or an IP address; checked with ``ipaddress`` first.
_LABEL: Final = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
# A time of day as people type it (3:00, 03:00, 03:00:30); stored as HH:MM[:SS].
TIME_OF_DAY: Final = re.compile(r"^(\d{1,2}):(\d{2})(:\d{2})?$")


class SourceOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Update source: empty ``upstream`` makes a root server; otherwise the upstream server's URL
    (``http://host:8530`` or ``https://host:8531``, any port), or ``microsoft-update`` for Microsoft Update."""

    upstream: str = ""
    ca_file: str = ""
    verify_tls: bool = True
    token: str = ""
    replica: bool = False
    # The protocol the upstream speaks: upmirror's own, the WSUS server-to-server protocol (Microsoft Update and WSUS
    # servers), or found out from the upstream (auto).
    protocol: Literal["auto", "upmirror", "wsus"] = "auto"


class ProxyOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The proxy used only while synchronizing; credentials are sent as Basic only when ``allow_basic_auth``."""

    enabled: bool = False
    host: str = ""
    port: Port = 80
    user: str = ""
    domain: str = ""
    password: str = ""
    allow_basic_auth: bool = False


class ScheduleOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Manual, or automatic from ``first_sync`` (UTC, HH:MM or HH:MM:SS) ``per_day`` times a day, each shifted by
    a random offset of up to ``max_random_offset_minutes``; an unreachable upstream is retried ``retries`` times
    ``retry_interval_minutes`` apart."""

    automatic: bool = False
    first_sync: Annotated[
        str,
        msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$", description="HH:MM (UTC), e.g. 03:00"),
    ] = "03:00"
    per_day: Annotated[int, msgspec.Meta(ge=1, le=24)] = 1
    max_random_offset_minutes: Annotated[int, msgspec.Meta(ge=0, le=720)] = 30
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    retry_interval_minutes: Annotated[float, msgspec.Meta(ge=0, le=1440)] = 15.0


class ContentOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where and when update files are stored. ``directory`` is relative to the server directory unless absolute."""

    directory: str = "content"
    store_locally: bool = True
    download_only_when_approved: bool = False
    express_files: bool = False


class TransferOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Download engine tuning (``upmirror tune`` measures good values for a link). The defaults are the core's
    (``upmirror._native``), which the HTTP client and the download engine take too."""

    connections: Annotated[int, msgspec.Meta(ge=1, le=256)] = DEFAULT_CONNECTIONS
    chunk_size_mib: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4  # measured: benches W2a/W2b
    retries: Annotated[int, msgspec.Meta(ge=0, le=20)] = DEFAULT_RETRIES
    connect_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = DEFAULT_CONNECT_TIMEOUT_SECONDS
    read_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = DEFAULT_READ_TIMEOUT_SECONDS


class ServerOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What ``upmirror serve`` listens on and offers to downstream servers and clients."""

    host: str = "127.0.0.1"
    port: Port = wsus.DEFAULT_PORT
    # TLS (WSUS: 8531): a PEM certificate chain and its private key; both empty serves plain HTTP.
    tls_certificate: str = ""
    tls_key: str = ""
    anonymous_content: bool = False
    max_updates_per_request: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # The WSUS protocol (/ServerSyncWebService): WSUS downstream servers cannot show an upmirror token, so they are
    # served only when this is on; the sync cookies it hands out expire after this long (WSUS: 240 minutes).
    anonymous_wsus_sync: bool = False
    cookie_lifetime_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)] = 240 * 60


class Options(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything on the Options page. Defaults: all Windows products, Critical and Security Updates, English."""

    source: SourceOptions = msgspec.field(default_factory=SourceOptions)
    proxy: ProxyOptions = msgspec.field(default_factory=ProxyOptions)
    products: list[str] = msgspec.field(default_factory=lambda: [wsus.WINDOWS_FAMILY])
    classifications: list[str] = msgspec.field(default_factory=lambda: [wsus.CRITICAL_UPDATES, wsus.SECURITY_UPDATES])
    languages: list[str] = msgspec.field(default_factory=lambda: ["en"])
    schedule: ScheduleOptions = msgspec.field(default_factory=ScheduleOptions)
    content: ContentOptions = msgspec.field(default_factory=ContentOptions)
    transfer: TransferOptions = msgspec.field(default_factory=TransferOptions)
    server: ServerOptions = msgspec.field(default_factory=ServerOptions)

    @property
    def is_root(self) -> bool:
        return not self.source.upstream

    def redacted(self) -> dict[str, Any]:
        """The options as plain data with every secret replaced by a placeholder: the only way they are shown."""
        data: dict[str, Any] = msgspec.to_builtins(self)
        for dotted in SECRET_FIELDS:
            section, name = dotted.split(".")
            if data[section][name]:
                data[section][name] = REDACTED
        return data


def validate_upstream_url(url: str) -> str:
    """An upstream is ``http(s)://host[:port]`` with nothing else (the WSUS default port is implied when absent), or
    ``microsoft-update``."""
    if not url or url == MICROSOFT_UPDATE:
        return url
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username
        or parts.password
        or parts.query
        or parts.fragment
        or parts.path not in ("", "/")
        or port == -1
        or (port is not None and not 1 <= port <= 65535)
    ):
        raise InputError(
            f"source.upstream {url!r} is not a valid upstream URL; expected http://HOST[:PORT], https://HOST[:PORT] "
            "or microsoft-update"
        )
    return url.rstrip("/")


def validate(options: Options) -> Options:
    """Checks what the field types cannot: the upstream URL, host names, known languages, a content directory of its
    own, a random offset within the schedule's spacing, and the options that go together."""
    validate_upstream_url(options.source.upstream)
    if options.proxy.enabled and not options.proxy.host:
        raise InputError("proxy.host must be set when proxy.enabled is true")
    for key, host in (("server.host", options.server.host), ("proxy.host", options.proxy.host)):
        if (host or key == "server.host") and not is_host(host):
            raise InputError(
                f"{key} must be an IP address or a host name (letters, digits, hyphens and dots), "
                f"e.g. 0.0.0.0 or wsus1.example.com, not {host!r}"
            )
    if os.path.normpath(options.content.directory) == ".":
        raise InputError(
            "content.directory must name a folder of its own (e.g. content, or an absolute path), "
            f"not the server directory: {options.content.directory!r}"
        )
    unknown = [language for language in options.languages if language not in wsus.LANGUAGES]
    if unknown:
        raise InputError(f"unknown language {unknown[0]!r}; allowed: {', '.join(wsus.LANGUAGES)}")
    spacing = 24 * 60 / options.schedule.per_day
    if options.schedule.max_random_offset_minutes >= spacing:
        raise InputError(
            f"schedule.max_random_offset_minutes must be less than the {spacing:.4g} minutes between "
            f"{options.schedule.per_day} syncs a day, not {options.schedule.max_random_offset_minutes}"
        )
    if bool(options.server.tls_certificate) != bool(options.server.tls_key):
        raise InputError("server.tls_certificate and server.tls_key go together: set both, or neither for plain HTTP")
    for key in ("products", "classifications", "languages"):
        values: list[str] = getattr(options, key)
        if len(set(values)) != len(values):
            raise InputError(f"{key} lists a value twice: {values}")
    return options


def is_host(text: str) -> bool:
    """An IP address (v4 or v6) or a host name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return bool(HOST_NAME.match(text))
    return True


def from_data(data: Any, *, check: bool = True) -> Options:
    """Options from plain data; ``check`` also applies the checks across fields (``validate``)."""
    try:
        options = msgspec.convert(data, Options)
    except msgspec.ValidationError as error:
        raise InputError(describe_validation_error(error, data)) from None
    return validate(options) if check else options


def describe_validation_error(error: msgspec.ValidationError, data: object = None) -> str:
    """msgspec says "Expected `int` <= 24 - at `$.schedule.per_day`"; users read "schedule.per_day must be 1-24, not
    25": the option's name, what it allows in words (from its type and constraints), and the value found in
    ``data``."""
    problem, _, where = str(error).partition(" - at `$")
    path: list[str | int] = [
        name or int(index) for name, index in re.findall(r"\.([^.\[`]+)|\[(\d+)\]", where.rstrip("`"))
    ]
    names = [part for part in path if isinstance(part, str)]
    unknown = re.match(r"Object contains unknown field `(.*)`", problem)
    if unknown:
        return f"unknown option {'.'.join([*names, unknown[1]])!r}"
    kind: Any = msgspec.inspect.type_info(Options)
    for part in path:
        kind = _unwrap(kind)[0]
        if isinstance(kind, msgspec.inspect.StructType):
            kind = next(field.type for field in kind.fields if field.name == part)
        elif isinstance(kind, msgspec.inspect.ListType):
            kind = kind.item_type
    kind, description = _unwrap(kind)
    message = f"{'.'.join(names) or 'the options file'} must be {description or _allowed(kind)}"
    value = data
    for part in path:
        try:
            value = value[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return message
    return f"{message}, not {one_line(repr(value))}"


def _unwrap(kind: Any) -> tuple[Any, str]:
    """A type without its ``Meta`` annotations, and the description they give (or "")."""
    if isinstance(kind, msgspec.inspect.Metadata):
        return kind.type, (kind.extra_json_schema or {}).get("description", "")
    return kind, ""


def _allowed(kind: Any) -> str:
    """What a type with its constraints allows, in words."""
    inspect = msgspec.inspect
    if isinstance(kind, inspect.IntType) and kind.ge is not None and kind.le is not None:
        return f"{kind.ge}-{kind.le}"
    if isinstance(kind, inspect.FloatType):
        low = f"above {kind.gt}" if kind.gt is not None else f"from {kind.ge}" if kind.ge is not None else ""
        high = "" if kind.le is None else f"and at most {kind.le}" if kind.gt is not None else f"to {kind.le}"
        return " ".join(part for part in ("a number", low, high) if part)
    if isinstance(kind, inspect.LiteralType):
        return "one of " + ", ".join(str(value) for value in kind.values)
    words: dict[type, str] = {
        inspect.BoolType: "true or false",
        inspect.IntType: "a whole number",
        inspect.ListType: "a list of names (comma-separated on the command line)",
        inspect.StructType: "a table of options",
    }
    return words.get(type(kind), "text")


class ServerDirectory:
    """A server's directory: ``upmirror.toml``, ``upmirror.db``, ``content/`` (unless placed elsewhere), ``logs/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_arg(cls, directory: str | None) -> ServerDirectory:
        """``--dir``, else ``$UPMIRROR_DIR``, else the current directory."""
        return cls(Path(directory or os.environ.get("UPMIRROR_DIR") or ".").resolve())

    @property
    def options_path(self) -> Path:
        return self.root / OPTIONS_FILE

    @property
    def database_path(self) -> Path:
        return self.root / DATABASE_FILE

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def content_dir(self, options: Options) -> Path:
        return self.root / options.content.directory  # an absolute directory replaces the root

    def exists(self) -> bool:
        return self.options_path.is_file()

    def load(self, *, check: bool = True) -> Options:
        """The options in the file; ``check`` off skips the checks across fields (``options set`` can then repair a
        file whose values no longer fit together). A file that is not UTF-8 TOML, or that no longer says the
        server's role (an empty file, a lost [source] section), is refused rather than read as a root server."""
        if not self.exists():
            raise InputError(f"{self.root} is not an upmirror server directory (run `upmirror init --dir {self.root}`)")
        raw = self.options_path.read_bytes()
        try:
            text = raw.decode()
        except UnicodeDecodeError as error:
            raise InputError(
                f"{self.options_path} is not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}); "
                "restore it from a backup or correct it in an editor"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InputError(f"{self.options_path}: not valid TOML: {one_line(str(error))}") from None
        source = data.get("source")
        if not isinstance(source, dict) or "upstream" not in source:
            lost = "is empty" if not data else "has no [source] section" if source is None else "has no source.upstream"
            raise InputError(
                f"{self.options_path} {lost}, so it no longer says whether this is a root or a downstream server; "
                'restore it from a backup, or add [source] with upstream = "" (a root server) or '
                'upstream = "http://HOST:8530" (a downstream server)'
            )
        try:
            return from_data(data, check=check)
        except InputError as error:
            raise InputError(f"{self.options_path}: {error}") from None

    def save(self, options: Options) -> None:
        """Writes the options atomically with mode 0600 (they hold secrets), every section spelt out (the file
        always says the server's role)."""
        if self.content_dir(validate(options)).resolve() == self.root.resolve():
            raise InputError(f"content.directory must name a folder of its own, not the server directory {self.root}")
        text = tomli_w.dumps(msgspec.to_builtins(options))
        temporary = self.options_path.with_suffix(".toml.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        temporary.chmod(0o600)  # O_CREAT honours the umask; the file must not be group- or world-readable
        temporary.replace(self.options_path)


def set_option(options: Options, key: str, value: str, *, check: bool = True) -> Options:
    """Returns new options with ``key`` (``section.name`` or a top-level list) set from its text form; lists take
    comma-separated values. Each field is validated; ``check`` also applies the checks across fields (off while
    several options change together). ``options`` is not changed."""
    data: dict[str, Any] = msgspec.to_builtins(options)
    section, _, name = key.partition(".")
    allowed = sorted(
        [f"{s}.{n}" for s, fields in data.items() if isinstance(fields, dict) for n in fields]
        + [s for s, v in data.items() if isinstance(v, list)]
    )
    if key not in allowed:
        raise InputError(f"unknown option {key!r}; options are: {', '.join(allowed)}")
    current = data[section][name] if name else data[section]
    parsed = NORMALIZE.get(key, _unchanged)(parse_value(key, value, current))
    if name:
        data[section][name] = parsed
    else:
        data[section] = parsed
    return from_data(data, check=check)


def normalize_time(value: object) -> object:
    """3:00 -> 03:00 (what the schedule's pattern then checks)."""
    match = TIME_OF_DAY.match(str(value))
    return f"{int(match[1]):02d}:{match[2]}{match[3] or ''}" if match else value


def normalize_languages(value: object) -> object:
    """Known language codes in their usual spelling whatever the case typed (zh-cn -> zh-CN)."""
    spelling = {code.casefold(): code for code in wsus.LANGUAGES}
    return [spelling.get(str(code).casefold(), code) for code in value] if isinstance(value, list) else value


def check_ca_file(value: object) -> object:
    """A CA bundle must exist and hold a certificate now, not fail the next sync; it is stored as an absolute path
    (a sync or the scheduler runs from another directory)."""
    if not value:
        return value
    path = Path(str(value)).expanduser().absolute()
    try:
        HttpClient(ca_file=path)  # the client the sync builds, with the same reading of the bundle
    except FileNotFoundError:
        raise InputError(f"source.ca_file {str(path)!r} does not exist; give a PEM file of CA certificates") from None
    except OSError as error:
        raise InputError(f"source.ca_file {str(path)!r} cannot be read: {error.strerror}") from None
    except ValueError:
        raise InputError(
            f"source.ca_file {str(path)!r} holds no certificate; give a PEM file of CA certificates"
        ) from None
    return str(path)


def _unchanged(value: object) -> object:
    return value


# Keys whose text is put in its stored form, or checked against the machine, when set.
NORMALIZE: Final = {
    "schedule.first_sync": normalize_time,
    "languages": normalize_languages,
    "source.ca_file": check_ca_file,
}


def parse_value(key: str, text: str, current: object) -> object:
    """Text from the command line, read as the type the option already has."""
    if isinstance(current, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise InputError(f"{key} takes true or false, not {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise InputError(f"{key} takes a whole number, not {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise InputError(f"{key} takes a number, not {text!r}") from None
    if isinstance(current, list):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text
