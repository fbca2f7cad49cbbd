"""The client's side of one HTTP/1.1 exchange with the daemon's control API, on a socket of its own.

Shared by ``httpapi.ControlClient`` and the read commands' ``reads``, which must not load the operation
table; a few lines instead of http.client, which would cost a read command more than its whole request.
"""

from __future__ import annotations

import socket


def connect(port: int, timeout: float) -> socket.socket:
    """A connection to the daemon's control port on 127.0.0.1. Not socket.create_connection: it resolves
    the address through getaddrinfo, which loads the idna codec and unicodedata, a tenth of a read command.
    OSError when no connection is made."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def request_head(method: str, path: str, port: int, token: str, accept: str = "application/json",
                 body_length: int | None = None) -> bytes:
    """The request line and headers of one request to the daemon on ``port``, on a connection of its own."""
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: {accept}\r\nConnection: close\r\n"
            + (f"Content-Type: application/json\r\nContent-Length: {body_length}\r\n" if body_length is not None
               else "") + "\r\n").encode("latin-1")


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of the HTTP/1.1 response on ``sock`` (asked with ``Connection: close``)."""
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = dechunk(body)
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        if len(body) < length:
            raise ValueError(f"the response ended after {len(body)} of {length} bytes")
        body = body[:length]
    return int(parts[1]), body


def dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    pos = 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2:end + 2 + size])
        pos = end + 2 + size + 2
