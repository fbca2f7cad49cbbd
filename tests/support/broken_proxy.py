"""A proxy whose request parser has one check broken: the negative controls of the hostile-HTTP tests.

    python tests/support/broken_proxy.py BREAK [proxy arguments, as python -m meshpipe.engines.local.dataplane]

BREAK says what is broken:

    lenient_<name>     one of llhttp's checks turned off (httptools' ``set_dangerous_leniencies``)
    silent             malformed input stops the parser without an error, as if it were not checked
    rewrite:OLD=NEW    the parser reads OLD as NEW (Python escapes allowed), e.g. a miscounted Content-Length
    version            every request is taken for HTTP/1.1
    nofile:N           the process may hold at most N file descriptors

A test that passes against the real proxy must fail against the matching broken one; otherwise it
does not prove that the check it is about is what refuses the input.
"""

from __future__ import annotations

import codecs
import resource
import sys
from typing import Any

import httptools

from meshpipe.engines.local.dataplane import process


class BrokenParser:
    def __init__(self, inner: httptools.HttpRequestParser, silent: bool = False,
                 rewrite: tuple[bytes, bytes] | None = None, version: str | None = None) -> None:
        self.inner = inner
        self.silent = silent
        self.rewrite = rewrite
        self.version = version

    def feed_data(self, data: bytes) -> None:
        if self.rewrite is not None:
            data = data.replace(*self.rewrite)
        try:
            self.inner.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserCallbackError):
            raise
        except httptools.HttpParserError:
            if not self.silent:
                raise

    def get_http_version(self) -> str:
        return self.version or self.inner.get_http_version()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def parser_factory(spec: str) -> Any:
    def unescape(text: str) -> bytes:
        return codecs.escape_decode(text.encode("utf-8"))[0]  # type: ignore[attr-defined,no-any-return]

    def make(protocol: Any) -> Any:
        inner = httptools.HttpRequestParser(protocol)
        if spec.startswith("lenient_"):
            inner.set_dangerous_leniencies(**{spec: True})
            return inner
        if spec == "silent":
            return BrokenParser(inner, silent=True)
        if spec.startswith("rewrite:"):
            old, new = spec[len("rewrite:"):].split("=", 1)
            return BrokenParser(inner, rewrite=(unescape(old), unescape(new)))
        if spec == "version":
            return BrokenParser(inner, version="1.1")
        return inner

    return make


def main() -> int:
    spec, argv = sys.argv[1], sys.argv[2:]
    if spec.startswith("nofile:"):
        limit = int(spec.split(":", 1)[1])
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return process.main(argv, new_parser=parser_factory(spec))


if __name__ == "__main__":
    sys.exit(main())
