"""A TCP relay on loopback that counts the bytes an upstream sends: an observer of a sync that is independent of
upmirror's own accounting. ``with CountingRelay(port) as relay:`` forwards ``relay.port`` to ``port`` on a thread;
``relay.downstream_bytes`` is what the upstream sent through it, ``relay.connections`` how many were opened.
``relay.reset()`` zeroes the counters between two syncs. ``sent_to_upstream`` keeps the first MiB of what clients
sent, for tests that check what a request carried. ``relay.go_down_on(b"GET /Content/")`` makes the upstream vanish
the moment a client sends that: every connection is cut and the port refuses new ones from then on."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

BUFFER = 1 << 16
RECORD_LIMIT = 1 << 20


class CountingRelay:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.downstream_bytes = 0
        self.upstream_bytes = 0
        self.connections = 0
        self.sent_to_upstream = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._down = threading.Event()
        self._down_on: bytes | None = None
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.downstream_bytes = self.upstream_bytes = self.connections = 0
            self.sent_to_upstream.clear()

    def go_down_on(self, marker: bytes) -> None:
        self._down_on = marker

    def _go_down(self) -> None:
        self._down.set()
        # Shut down, not only closed: the listening socket stops at once (a thread may still be polling it), so
        # every connection from now on is refused.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def __enter__(self) -> CountingRelay:
        self.listener.settimeout(0.2)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._pump, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            client.close()
            return
        with client, server, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while not self._stop.is_set() and not self._down.is_set():
                for key, _ in selector.select(timeout=0.2):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(BUFFER)
                    except OSError:
                        return
                    if not data or self._down.is_set():
                        return
                    if source is client and self._down_on is not None and self._down_on in data:
                        self._go_down()
                        return
                    with self._lock:
                        if source is server:
                            self.downstream_bytes += len(data)
                        else:
                            self.upstream_bytes += len(data)
                            if len(self.sent_to_upstream) < RECORD_LIMIT:
                                self.sent_to_upstream += data
                    try:
                        key.data.sendall(data)
                    except OSError:
                        return

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)
