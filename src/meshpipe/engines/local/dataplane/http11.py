"""HTTP/1.1 bytes the proxies write: hop-by-hop headers, chunk framing, local replies.

Requests are parsed with httptools (llhttp) and rebuilt for the next hop; responses are passed on as
the upstream wrote them, with one header inserted after the status line, so a response costs one
parse and no re-encoding.
"""

from __future__ import annotations

# Headers that describe one connection, not the message: never forwarded (RFC 9110, 7.6.1).
# Transfer-Encoding and Content-Length stay: the body is forwarded with the framing it arrived with.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
    b"proxy-authorization", b"proxy-authenticate",
})

# Connection options that are not header names: every other token of ``Connection`` names a header
# that is hop-by-hop too (``Connection: Upgrade, HTTP2-Settings``).
CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
# Headers a Connection header may not strip (RFC 9110, 7.6.1: a sender must not name fields meant for every
# recipient): without them the next hop would get a request with no Host, no framing or no request id.
END_TO_END = frozenset({b"host", b"content-length", b"transfer-encoding", b"x-request-id", b"x-forwarded-for",
                        b"x-forwarded-proto"})

REASONS = {
    200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 413: "Content Too Large", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"
HEADER_SEP = b": "


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (the parser hands the body over de-chunked)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def insert_header(head: bytes, header_line: bytes) -> bytes:
    """``head`` (status line, headers, maybe some body) with ``header_line`` added after the status line."""
    end = head.find(CRLF) + 2
    return head[:end] + header_line + head[end:]


def local_reply(status: int, flag: str, message: str, keep_alive: bool, server: bytes = b"meshpipe",
                extra_headers: bytes = b"") -> bytes:
    """A complete plain-text response written by the proxy itself."""
    body = message.encode("utf-8", "replace") + b"\n"
    reason = REASONS.get(status, "Error")
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("ascii")),
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(body),
        b"x-meshpipe-error: %s\r\n" % flag.encode("ascii") if flag else b"",
        b"server: %s\r\n" % server,
        extra_headers,
        b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n",
        CRLF,
        body,
    ))


def json_reply(status: int, body: bytes, keep_alive: bool = True,
               content_type: bytes = b"application/json") -> bytes:
    reason = REASONS.get(status, "Error")
    return b"".join((
        b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("ascii")),
        b"content-type: %s\r\n" % content_type,
        b"content-length: %d\r\n" % len(body),
        b"connection: keep-alive\r\n" if keep_alive else b"connection: close\r\n",
        CRLF,
        body,
    ))
