"""A tiny TCP proxy that loses answers: it forwards a request, waits until the upstream service
starts answering (so the service has acted on it), then closes the client's connection without
passing the answer on. Later connections are piped through unchanged.

This is the failure that makes retries dangerous: the client cannot tell whether its request
was carried out. Used by the retry tests to check that a retried release is charged once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["DroppingProxy"]


def _read_request(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 request (headers and a ``Content-Length`` body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class DroppingProxy:
    """Listen on 127.0.0.1:``port``; drop the answer on the first ``drop`` connections."""

    def __init__(self, upstream_port: int, *, drop: int = 1) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.drop = drop
        self.connections = 0
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so the accept loop notices close() promptly
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DroppingProxy:
        self._accept_thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._accept_thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                index = self.connections
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(client, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket, index: int) -> None:
        self._track(client)
        try:
            upstream = self._track(socket.create_connection(self.upstream))
        except OSError:
            client.close()
            return
        if index < self.drop:
            try:
                upstream.sendall(_read_request(client))
                upstream.recv(1)  # the service has answered: it acted on the request
            except OSError:
                pass
            with self._lock:
                self.dropped += 1
            client.close()
            upstream.close()
            return
        pumps = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        client.close()
        upstream.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        for sock in (sink, source):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
