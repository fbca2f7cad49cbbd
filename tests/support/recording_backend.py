"""A backend that records every byte a proxy sends it, to prove that a refused request reached nothing.

It runs in the test's process on 127.0.0.1 (a port the OS picks), one thread per connection, and
answers each whole request it parses (httptools) with ``200 ok``. ``received`` is everything that
arrived on any connection since the last :meth:`reset`, request boundaries or not.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

import httptools

LOOPBACK = "127.0.0.1"


@dataclass
class Request:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class _Parsed:
    done: list[Request] = field(default_factory=list)
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    parser: httptools.HttpRequestParser | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.done.append(Request(self.parser.get_method(), self.url, self.headers, self.body))
        self.url, self.headers, self.body = b"", [], b""


class RecordingBackend:
    def __init__(self) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = int(self.sock.getsockname()[1])
        self.lock = threading.Lock()
        self._received = bytearray()
        self._requests: list[Request] = []
        self.connections = 0
        self.open: list[socket.socket] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def __enter__(self) -> RecordingBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def received(self) -> bytes:
        with self.lock:
            return bytes(self._received)

    @property
    def requests(self) -> list[Request]:
        with self.lock:
            return list(self._requests)

    def reset(self) -> None:
        with self.lock:
            self._received.clear()
            self._requests.clear()

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        with self.lock:
            for conn in self.open:
                conn.close()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        parsed = _Parsed()
        parser = httptools.HttpRequestParser(parsed)
        parsed.parser = parser
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                with self.lock:
                    self._received += data
                try:
                    parser.feed_data(data)
                except httptools.HttpParserError:
                    return
                while parsed.done:
                    request = parsed.done.pop(0)
                    with self.lock:
                        self._requests.append(request)
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            conn.close()
