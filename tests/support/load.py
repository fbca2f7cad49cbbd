"""Steady loopback load for the end-to-end tests, and the poll-with-deadline they synchronise on."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something true, and return it; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s (last: {value!r})")
        time.sleep(every)


class KeepAliveLoad(Generic[R]):
    """Client threads, each on a keep-alive connection to 127.0.0.1:``port``, sending requests until
    stopped; every outcome is kept in ``results``. A subclass says what one request is and what a failed
    one records (the connection is then opened again)."""

    def __init__(self, port: int, clients: int, pause: float = 0.0) -> None:
        self.port, self.pause = port, pause
        self.results: list[R] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def one(self, conn: http.client.HTTPConnection) -> R:
        raise NotImplementedError

    def failed(self, exc: Exception) -> R:
        raise NotImplementedError

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                result = self.one(conn)
            except (OSError, http.client.HTTPException) as exc:
                result = self.failed(exc)
                conn.close()
                conn = None
            with self._lock:
                self.results.append(result)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def __enter__(self) -> KeepAliveLoad[R]:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def count(self) -> int:
        with self._lock:
            return len(self.results)

    def snapshot(self) -> list[R]:
        with self._lock:
            return list(self.results)
