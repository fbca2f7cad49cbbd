"""The sample apps as real processes on free loopback ports."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meshpipe.samples.hello_web import page, proxy_for
from meshpipe.samples.options import split_joined_options
from support.http_server import QuietHandler, serving

START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before listening")
        try:
            if get(port, "/ping", timeout=1.0)[2] == "ok":
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing answered on port {port} within {timeout} s")


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no proxy settings from the machine running the tests."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "port", "host",
                                "greeting", "message", "backend_url")}
    env.update({"HOME": str(tmp_path), "MESHPIPE_HOME": str(tmp_path / "mp")})
    return env


Start = Callable[..., tuple[subprocess.Popen[bytes], int]]


@pytest.fixture
def start(base_env: dict[str, str]) -> Iterator[Start]:
    procs: list[subprocess.Popen[bytes]] = []

    def _start(module: str, *args: str, env: dict[str, str] | None = None, port: int | None = None,
               wait: bool = True) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port() if port is None else port
        full_env = dict(base_env)
        full_env.update(env or {})
        argv = [sys.executable, "-m", f"meshpipe.samples.{module}", *args]
        if "PORT" not in (env or {}) and not any(a.startswith(("-p", "--port")) for a in args):
            argv += ["-p", str(port)]
        proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        if wait:
            wait_until_up(port, proc)
        return proc, port

    yield _start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


# --- hello-backend -----------------------------------------------------------------------------------

def test_backend_data_has_timestamp_greeting_and_message(start: Start) -> None:
    _, port = start("hello_backend")
    before = time.time() * 1000
    status, headers, body = get(port, "/data")
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["greeting"] == "Hello"
    assert data["message"] == "Welcome to our world!"
    assert isinstance(data["timestamp"], int)
    assert before - 1000 <= data["timestamp"] <= time.time() * 1000 + 1000
    assert "\n" not in body.strip()


def test_backend_pretty_indents_and_ping_answers_ok(start: Start) -> None:
    _, port = start("hello_backend")
    status, _, body = get(port, "/data?pretty")
    assert status == 200
    assert '\n  "greeting": "Hello"' in body
    assert get(port, "/ping")[2] == "ok"
    assert get(port, "/nothing-here")[0] == 404


def test_backend_takes_options_joined_with_their_values_as_the_seed_writes_them(start: Start) -> None:
    _, port = start("hello_backend", "-g Yo", "-m Have a great day!")
    data = json.loads(get(port, "/data")[2])
    assert (data["greeting"], data["message"]) == ("Yo", "Have a great day!")


@pytest.mark.parametrize("args", [("-g", "Hi", "-m", "Two args"), ("--greeting=Hi", "--message=Two args")])
def test_backend_takes_usual_option_forms(start: Start, args: tuple[str, ...]) -> None:
    _, port = start("hello_backend", *args)
    data = json.loads(get(port, "/data")[2])
    assert (data["greeting"], data["message"]) == ("Hi", "Two args")


def test_backend_reads_greeting_message_and_port_from_the_environment(start: Start) -> None:
    port = free_port()
    _, _ = start("hello_backend", env={"GREETING": "Hey", "MESSAGE": "From env", "PORT": str(port)}, port=port)
    data = json.loads(get(port, "/data")[2])
    assert (data["greeting"], data["message"]) == ("Hey", "From env")


def test_explicit_port_option_wins_over_port_variable(start: Start) -> None:
    env_port, option_port = free_port(), free_port()
    proc, _ = start("hello_backend", "-p", str(option_port), env={"PORT": str(env_port)}, port=option_port)
    assert get(option_port, "/ping")[2] == "ok"
    with pytest.raises(OSError):
        get(env_port, "/ping", timeout=1.0)
    assert proc.poll() is None


def test_backend_rejects_a_bad_port_clearly(base_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "meshpipe.samples.hello_backend"], env={**base_env, "PORT": "eighty"},
                          capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert b"PORT='eighty' is not a port number" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_fail_rate_answers_500s_but_keeps_the_health_check_passing(start: Start) -> None:
    _, port = start("hello_backend", "-g Bad", "--fail-rate 1")
    assert get(port, "/data")[0] == 500
    assert get(port, "/ping")[:1] == (200,)
    _, port = start("hello_backend", env={"FAIL_RATE": "0.5"})
    statuses = {get(port, "/data")[0] for _ in range(60)}
    assert statuses == {200, 500}  # (0.5 ** 60: never all the same)


def test_delay_ms_slows_every_answer_but_the_health_check(start: Start) -> None:
    _, port = start("hello_backend", env={"DELAY_MS": "300"})
    started = time.monotonic()
    assert get(port, "/data")[0] == 200
    assert time.monotonic() - started >= 0.3  # a sleep of 300 ms ends no sooner
    _, port = start("hello_web", "-b http://127.0.0.1:9/data", "--delay-ms", "8000")
    started = time.monotonic()
    assert get(port, "/ping", timeout=6.0)[2] == "ok"  # an 8 s delay would time this out


@pytest.mark.parametrize(("args", "env", "words"), [
    (("--fail-rate", "1.5"), {}, b"1.5 is not between 0 and 1"),
    (("--delay-ms", "soon"), {}, b"'soon' is not a whole number of milliseconds"),
    ((), {"FAIL_RATE": "lots"}, b"FAIL_RATE: 'lots' is not a number between 0 and 1"),
    ((), {"DELAY_MS": "-5"}, b"DELAY_MS: -5 is not 0-600000 milliseconds"),
])
def test_bad_fault_options_are_refused_clearly(base_env: dict[str, str], args: tuple[str, ...],
                                               env: dict[str, str], words: bytes) -> None:
    proc = subprocess.run([sys.executable, "-m", "meshpipe.samples.hello_backend", *args], env={**base_env, **env},
                          capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert words in proc.stderr and b"Traceback" not in proc.stderr


# --- hello-web ---------------------------------------------------------------------------------------

PAGE_RE = re.compile(r"^Hello Bob<br>Welcome to our world!<br><br>timestamp: \d{13}$")


def test_web_composes_the_page_from_a_real_backend(start: Start) -> None:
    _, backend = start("hello_backend")
    _, web = start("hello_web", f"-b http://127.0.0.1:{backend}/data")
    status, headers, body = get(web, "/hello/Bob")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert PAGE_RE.match(body), body
    assert get(web, "/ping")[2] == "ok"


def test_web_escapes_the_name_it_puts_in_html(start: Start) -> None:
    _, backend = start("hello_backend")
    _, web = start("hello_web", "-b", f"http://127.0.0.1:{backend}/data")
    body = get(web, "/hello/%3Cb%3EBob%3C%2Fb%3E")[2]
    assert body.startswith("Hello &lt;b&gt;Bob&lt;/b&gt;<br>")


class _RecordingProxy(QuietHandler):
    """A forward HTTP proxy that sends every request to one backend port and records what it was asked."""

    backend_port = 0
    seen: list[tuple[str, str]] = []
    delay = 0.0

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        time.sleep(type(self).delay)
        conn = http.client.HTTPConnection("127.0.0.1", type(self).backend_port, timeout=10)
        try:
            conn.request("GET", "/data")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def recording_proxy() -> Iterator[tuple[type[_RecordingProxy], int]]:
    handler = type("Proxy", (_RecordingProxy,), {"seen": [], "delay": 0.0})
    with serving(handler) as port:
        yield handler, port


def test_web_calls_the_backend_through_http_proxy(start: Start, recording_proxy: tuple[type[_RecordingProxy], int]
                                                  ) -> None:
    handler, proxy_port = recording_proxy
    _, backend = start("hello_backend", "-g Yo", "-m Have a great day!")
    handler.backend_port = backend
    _, web = start("hello_web", "-b http://hello-backend.demo.local/data",
                   env={"HTTP_PROXY": f"http://127.0.0.1:{proxy_port}"})
    status, _, body = get(web, "/hello/Bob")
    assert status == 200, body
    assert body.startswith("Yo Bob<br>Have a great day!<br><br>timestamp: ")
    assert handler.seen == [("http://hello-backend.demo.local/data", "hello-backend.demo.local")]


def test_web_answers_502_naming_the_backend_when_it_is_down(start: Start) -> None:
    dead = free_port()
    _, web = start("hello_web", f"-b http://127.0.0.1:{dead}/data")
    status, _, body = get(web, "/hello/Bob")
    assert status == 502
    assert f"the backend http://127.0.0.1:{dead}/data could not be reached" in body


def test_web_answers_502_when_the_backend_answers_an_error(start: Start) -> None:
    _, backend = start("hello_backend")
    _, web = start("hello_web", f"-b http://127.0.0.1:{backend}/missing")
    status, _, body = get(web, "/hello/Bob")
    assert status == 502
    assert "answered HTTP 404" in body


def test_web_without_a_backend_url_exits_with_a_clear_message(base_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "meshpipe.samples.hello_web", "-p", "0"], env=base_env,
                          capture_output=True, timeout=30)
    assert proc.returncode == 2
    assert b"no backend URL: pass -b" in proc.stderr
    assert b"Traceback" not in proc.stderr


# --- stopping ----------------------------------------------------------------------------------------

def test_sigterm_stops_the_backend_with_status_0(start: Start) -> None:
    proc, _ = start("hello_backend")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_sigterm_lets_a_request_in_flight_finish(start: Start, recording_proxy: tuple[type[_RecordingProxy], int]
                                                ) -> None:
    handler, proxy_port = recording_proxy
    handler.delay = 1.0  # the backend call is slow, so the request is still in flight when SIGTERM arrives
    _, backend = start("hello_backend")
    handler.backend_port = backend
    web_proc, web = start("hello_web", "-b http://hello-backend.demo.local/data",
                          env={"HTTP_PROXY": f"http://127.0.0.1:{proxy_port}"})
    result: dict[str, object] = {}

    def call() -> None:
        try:
            result["response"] = get(web, "/hello/Bob")
        except OSError as exc:
            result["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while not handler.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert handler.seen, "the request never reached the backend"
    web_proc.send_signal(signal.SIGTERM)
    caller.join(timeout=10)
    assert "error" not in result, result.get("error")
    status, _, body = result["response"]  # type: ignore[misc]
    assert status == 200 and body.startswith("Hello Bob<br>")
    assert web_proc.wait(timeout=10) == 0
    with pytest.raises(OSError):
        get(web, "/ping", timeout=1.0)


# --- pure helpers ------------------------------------------------------------------------------------

def test_split_joined_options() -> None:
    assert split_joined_options(["-b http://x/data", "-m Have a great day!", "--greeting Yo", "--message=A b",
                                 "plain words", "-g"]) == [
        "-b", "http://x/data", "-m", "Have a great day!", "--greeting", "Yo", "--message=A b", "plain words", "-g"]
    # A value that starts with a dash, right after its option, stays whole.
    assert split_joined_options(["-m", "-- not an option", "-g Hi"]) == ["-m", "-- not an option", "-g", "Hi"]


def test_proxy_for_honours_http_proxy_and_no_proxy() -> None:
    url = "http://hello-backend.demo.local/data"
    assert proxy_for(url, {}) is None
    assert proxy_for(url, {"HTTP_PROXY": "http://127.0.0.1:1"}) == "http://127.0.0.1:1"
    assert proxy_for(url, {"http_proxy": "http://127.0.0.1:2"}) == "http://127.0.0.1:2"
    assert proxy_for(url, {"HTTP_PROXY": "http://127.0.0.1:1", "NO_PROXY": "localhost,.demo.local"}) is None
    assert proxy_for(url, {"HTTP_PROXY": "http://127.0.0.1:1", "no_proxy": "*"}) is None
    assert proxy_for(url, {"HTTP_PROXY": "http://127.0.0.1:1", "NO_PROXY": "other.local"}) == "http://127.0.0.1:1"


def test_page_format() -> None:
    assert page("Bob", {"greeting": "Hello", "message": "Welcome to our world!", "timestamp": 1619709367722}) == \
        "Hello Bob<br>Welcome to our world!<br><br>timestamp: 1619709367722"
