"""The web dashboard in a real browser: a real environment (daemon, proxies, apps, git pushes, temporary
MESHPIPE_HOME), the address ``meshpipe dashboard`` prints, opened in headless Chromium (Debian's package,
driven over the DevTools protocol; ``./dev`` and ``.ci/run`` install it), every check made through the DOM.

A screenshot of the service page under load is saved in the test's temporary folder; its path is printed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meshpipe.mesh.routing import make_gateway_route
from support.browser import Chromium, find_chromium
from test_local_engine_e2e import (  # noqa: F401 (make_env is a fixture)
    BACKEND_MANIFEST,
    BACKEND_V2_MANIFEST,
    ENV,
    WEB_MANIFEST,
    Load,
    LocalEnv,
    make_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# How long the test waits for the page to show a change. The dashboard pushes on change (the weight
# change typically shows in well under a second: the latency is printed and bench/bench_dashboard.py
# measures it against its 1 s target); this bound only keeps a slow shared machine from failing the test.
PATIENCE_S = 10.0
TOKEN = "t0ken-" + "y" * 40
FAKE_ENV = "demo"


@pytest.fixture
def chromium() -> str:
    found = find_chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs it (apt-get install chromium chromium-driver)")
        pytest.skip("Chromium is not installed: ./dev test installs it (apt-get install chromium chromium-driver)")
    return found


def meshpipe(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "meshpipe", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return proc.stdout


def _weights_js() -> str:
    """version node id -> the weight its edge carries, as the page shows it."""
    return ("Object.fromEntries([...document.querySelectorAll('#graph g.edge[data-weight]')]"
            ".map(e => [e.dataset.to, Number(e.dataset.weight)]))")


def test_the_dashboard_shows_the_mesh_live_in_a_browser(make_env, chromium: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    env: LocalEnv = make_env(tasks=1)
    env.pipeline("hello-web")
    env.pipeline("hello-backend")
    web = env.deploy("hello-web", WEB_MANIFEST)
    old = env.deploy("hello-backend", BACKEND_MANIFEST)
    new = env.deploy("hello-backend", BACKEND_V2_MANIFEST)
    env.engine.gateway_route_set(ENV, make_gateway_route("r-hello", "/hello", "hello-web", "demo.local"))
    env.route("hello-web", **{web: 100})
    env.route("hello-backend", **{old: 90, new: 10})

    printed = json.loads(meshpipe("dashboard", "--env", ENV, "--no-open", "--format", "json"))
    url = printed["url"]
    assert printed["opened"] is False and url.startswith("http://127.0.0.1:") and "?token=" in url
    base = url.split("/?", 1)[0]

    with Chromium(chromium) as browser:
        # No token: refused. With it: a cookie the page's script cannot read, and the token leaves the address.
        browser.open(base + "/")
        assert "meshpipe dashboard --env demo" in browser.evaluate("document.body.innerText")
        browser.errors.clear()  # the refusals just seen, as the browser logs them
        browser.open(url)
        assert browser.evaluate("location.href") == base + "/"
        assert browser.evaluate("document.cookie") == ""

        # The topology: every service, every version, the route weights.
        expected = {f"vn_hello_web_{web}": 100, f"vn_hello_backend_{old}": 90, f"vn_hello_backend_{new}": 10}
        shown = browser.wait_for(f"(() => {{ const w = {_weights_js()}; return Object.keys(w).length >= 3 ? w : null; }})()",
                                 PATIENCE_S, "the topology's weights")
        assert shown == expected
        services = browser.evaluate("[...document.querySelectorAll('#graph g.node.service')].map(g => g.dataset.service)")
        assert sorted(services) == ["hello-backend", "hello-web"]
        versions = browser.evaluate("[...document.querySelectorAll('#graph g.node.version')].map(g => g.id)")
        assert sorted(versions) == sorted(expected)
        labels = browser.evaluate("[...document.querySelectorAll('#graph g.edge[data-weight] text')]"
                                  ".map(t => t.textContent)")
        assert sorted(labels) == sorted(["100%", "90%", "10%"])
        assert browser.evaluate("document.getElementById('live').textContent") == "live"

        # A route set from the command line shows without a reload.
        browser.evaluate("window.noReloadMarker = 42")
        updates = int(browser.evaluate("document.body.dataset.updates"))
        meshpipe("route", "set", "hello-backend", f"{old}=30", f"{new}=70", "--env", ENV)
        returned = time.monotonic()
        browser.wait_for(f"({_weights_js()})['vn_hello_backend_{new}'] === 70", PATIENCE_S, "the new weights")
        shown_after = time.monotonic() - returned
        print(f"\nweight change shown {shown_after * 1000:.0f} ms after `meshpipe route set` returned")
        assert browser.evaluate(_weights_js())[f"vn_hello_backend_{old}"] == 30
        assert browser.evaluate("window.noReloadMarker") == 42  # the same page: no reload
        assert int(browser.evaluate("document.body.dataset.updates")) > updates

        # The service page's request counter grows under load (a few loopback clients, stopped after).
        browser.open(f"{base}/services/hello-backend")
        browser.wait_for(f"!!document.querySelector('tr[data-version=\"{new}\"] td.requests')", PATIENCE_S,
                         "the service page's versions")
        assert browser.evaluate(f"document.querySelector('tr[data-version=\"{new}\"] td.weight').dataset.weight") == "70"
        before = int(browser.evaluate(f"document.querySelector('tr[data-version=\"{new}\"] td.requests').dataset.count"))
        with Load(env.ingress_port, "/hello/hello/Bob", clients=2) as load:
            grown = browser.wait_for(
                f"(() => {{ const n = Number(document.querySelector('tr[data-version=\"{new}\"] td.requests')"
                f".dataset.count); return n >= {before} + 20 ? n : 0; }})()", 60.0, "the request counter growing")
            # The charts draw the load too: a line in the requests/s sparkline.
            browser.wait_for(f"!!document.querySelector('tr[data-version=\"{new}\"] td.rps polyline')", 30.0,
                             "the requests/s chart")
            shot = browser.screenshot(tmp_path / "dashboard-service.png")
        assert load.count() > 0 and not load.failures()
        assert grown >= before + 20
        assert browser.evaluate("document.querySelectorAll('#runs li.run').length") >= 2
        stages = browser.evaluate("[...document.querySelector('#runs li.run').querySelectorAll('li.stage')]"
                                  ".map(s => s.firstChild.textContent.trim())")
        assert stages == ["Source", "Build", "Deploy"]
        print(f"screenshot: {shot}")

        # Events, live: a route change appears as a new row.
        browser.open(f"{base}/events")
        browser.wait_for("document.querySelectorAll('#event-rows tr').length > 0", PATIENCE_S, "the events")
        env.route("hello-backend", **{new: 100})
        browser.wait_for("[...document.querySelectorAll('#event-rows tr')].some(r => "
                         f"r.textContent.includes('route r-hello-backend set: {new}=100'))", PATIENCE_S,
                         "the route event")
        assert browser.errors == []


def test_the_dashboard_refuses_other_host_names_and_a_wrong_token(make_env) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    env: LocalEnv = make_env(tasks=1)
    url = env.engine.dashboard_url(ENV)
    port = int(url.split(":")[2].split("/")[0])
    token = url.split("token=", 1)[1]
    assert (env.paths.root / "dashboard.token").stat().st_mode & 0o777 == 0o600

    def get(path: str, host: str = "127.0.0.1", cookie: str | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": f"{host}:{port}",
                                               **({"Cookie": cookie} if cookie else {})})
            return conn.getresponse().status
        finally:
            conn.close()

    assert get("/") == 403
    assert get("/?token=nope") == 403
    assert get(f"/?token={token}") == 303
    assert get("/", cookie=f"meshpipe-dashboard-{ENV}={token}") == 200
    assert get("/", host="rebound.example", cookie=f"meshpipe-dashboard-{ENV}={token}") == 403
    # The control token does not open the dashboard, nor the dashboard token the control API.
    control = json.loads(env.paths.daemon_json.read_text())
    assert get("/", cookie=f"meshpipe-dashboard-{ENV}={control['token']}") == 403
    conn = http.client.HTTPConnection("127.0.0.1", control["control_port"], timeout=10)
    conn.request("GET", "/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert conn.getresponse().status == 401
    conn.close()


class ServerThread:
    """A dashboard server over a fake environment, in its own thread and event loop."""

    def __init__(self, source: object) -> None:
        from meshpipe.engines.local.observe.dashboard.server import DashboardServer

        self.loop = asyncio.new_event_loop()
        self.server = DashboardServer(source, TOKEN, FAKE_ENV, sample_every=1000.0)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.port = int(asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30))
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


def _rollout(windows: list[dict[str, object]], step: int, status: str = "running") -> dict[str, object]:
    """A rollout in the shape of the daemon's GET /v1/rollouts/{svc}."""
    return {"service": "hello", "candidate": "bbbb2222", "stable": "aaaa1111", "strategy": "canary",
            "plan": {"strategy": "canary", "steps": [10, 50, 100], "interval_s": 30},
            "describe": "canary 10 → 50 → 100 %, 30 s per step", "status": status, "phase": "step",
            "paused": False, "step": step, "steps": 3, "candidate_weight": [10, 50, 100][step - 1],
            "windows": windows, "next_decision_in_s": 12.5, "reason": None}


def _window(number: int, step: int, weight: int, passed: bool) -> dict[str, object]:
    figures = {"requests": 200, "errors": 0 if passed else 40, "success_rate": 100.0 if passed else 80.0,
               "p99_ms": 4.5}
    return {"number": number, "step": step, "weight": weight, "phase": "step", "candidate": figures,
            "stable": {"requests": 1800, "errors": 0, "success_rate": 100.0, "p99_ms": 4.1},
            "verdict": "passed" if passed else "failed", "reasons": [] if passed else ["success rate 80.0 % < 99 %"]}


def test_the_service_page_shows_a_rollouts_steps_and_window_verdicts_live(chromium: str) -> None:
    from test_dashboard import FakeSource

    source = FakeSource()
    source.rollout_doc = _rollout([_window(1, 1, 10, True)], step=2)
    with ServerThread(source) as fake, Chromium(chromium) as browser:
        base = f"http://127.0.0.1:{fake.port}"
        browser.open(f"{base}/services/hello?token={TOKEN}")
        browser.wait_for("!!document.querySelector('#rollout li.step')", PATIENCE_S, "the rollout")
        steps = browser.evaluate("[...document.querySelectorAll('#rollout li.step')].map(s => [s.textContent, s.className])")
        assert steps == [["10 %", "step done"], ["50 %", "step current"], ["100 %", "step pending"]]
        assert browser.evaluate("document.querySelector('#rollout tr[data-window=\"1\"] td.verdict').textContent") == "passed"
        assert "step 2 of 3" in browser.evaluate("document.querySelector('#rollout .rollout-head').textContent")
        # A failed window and the rollback arrive without a reload.
        browser.evaluate("window.noReloadMarker = 7")
        source.rollout_doc = _rollout([_window(1, 1, 10, True), _window(2, 2, 50, False)], step=2, status="rolled back")
        fake.server.changed("rollout window judged")  # the daemon: a publish, or the next sample
        browser.wait_for("!!document.querySelector('#rollout tr[data-window=\"2\"]')", PATIENCE_S, "the failed window")
        row = browser.evaluate("document.querySelector('#rollout tr[data-window=\"2\"]').textContent")
        assert "failed" in row and "success rate 80.0 % < 99 %" in row and "80.00 % ok" in row and "10000" not in row
        assert browser.evaluate("window.noReloadMarker") == 7
        assert browser.errors == []


# Two-second windows judged on at least 10 requests (as the rollout tests use).
FAST_CANARY = ("  Strategy: canary\n  Steps: [20, 50, 100]\n  Interval: 2\n"
               "  Analysis:\n    MinRequests: 10\n    FailedWindows: 1\n")


def test_a_real_rollout_shows_its_steps_and_verdicts_live(chromium: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from support import rollout_env as r

    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with r.rollout_env(tmp_path) as env:
        first = env.push(r.backend_manifest("-g Hello", rollout=FAST_CANARY), "first")
        env.deployed(first)
        env.finished(first, 30)
        url = env.engine.dashboard_url(r.ENV)
        base = url.split("/?", 1)[0]
        with Chromium(chromium) as browser, r.Load(env.ingress_port) as load:
            browser.open(url)
            browser.open(f"{base}/services/{r.SERVICE}")
            browser.wait_for("!!document.querySelector('#rollout li.step')", PATIENCE_S, "the first rollout")
            browser.evaluate("window.noReloadMarker = 3")
            r.wait_until(lambda: len(load.results) > 20, 10, "load running")
            new = env.push(r.backend_manifest("-g Yo", rollout=FAST_CANARY), "new greeting")
            env.deployed(new)
            browser.wait_for(f"document.querySelector('#rollout .rollout-head')?.textContent.includes('{new}') && "
                             "document.querySelector('#rollout .rollout-head .badge').textContent === 'promoted'",
                             60.0, "the rollout promoted on the page")
            verdicts = browser.evaluate("[...document.querySelectorAll('#rollout tr[data-window]')]"
                                        ".map(r => [r.children[2].textContent, r.querySelector('.verdict').textContent])")
            rows = browser.evaluate("[...document.querySelectorAll('#rollout tr[data-window]')]"
                                    ".map(r => [...r.children].map(c => c.textContent))")
            head = browser.evaluate("document.querySelector('#rollout .rollout-head').textContent")
            steps = browser.evaluate("[...document.querySelectorAll('#rollout li.step')].map(s => s.className)")
            weight = browser.evaluate(f"document.querySelector('tr[data-version=\"{new}\"] td.weight')?.dataset.weight")
            assert browser.evaluate("window.noReloadMarker") == 3
            assert browser.errors == []
        status = env.status()
        assert [[f"{w['weight']} %", w["verdict"]] for w in status["windows"]] == verdicts
        # Every number on the page is the one `rollout status --format json` gives, in the same units.
        shown = json.loads(meshpipe("rollout", "status", r.SERVICE, "--env", r.ENV, "--format", "json"))
        assert f"step {shown['step']} of {shown['steps']}" in head
        assert len(rows) == len(shown["windows"]) == 2
        for row, w in zip(rows, shown["windows"], strict=True):
            cand = w["candidate"]
            assert row[:3] == [str(w["number"]), str(w["step"]), f"{w['weight']} %"], (row, w)
            assert row[5].startswith(f"{cand['requests']} req, {cand['errors']} err, "
                                     f"{cand['success_rate']:.2f} % ok"), (row[5], cand)
        assert [w["step"] for w in shown["windows"]] == [1, 2]  # numbered as the CLI: step 1/3, 2/3
        assert verdicts == [["20 %", "passed"], ["50 %", "passed"]]
        assert steps == ["step done"] * 3
        assert weight == "100"


def test_an_open_page_reconnects_by_itself_after_the_daemon_restarts(make_env, chromium: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    import signal

    from meshpipe.engines.local.state.daemonfiles import read_daemon_file
    from meshpipe.engines.local.tasks import processes as procs

    env: LocalEnv = make_env(tasks=1)
    env.pipeline("hello-backend")
    old = env.deploy("hello-backend", BACKEND_MANIFEST)
    new = env.deploy("hello-backend", BACKEND_V2_MANIFEST)
    env.route("hello-backend", **{old: 100, new: 0})
    url = env.engine.dashboard_url(ENV)
    with Chromium(chromium) as browser:
        browser.open(url)
        browser.wait_for("document.getElementById('live').textContent === 'live'", PATIENCE_S, "the stream")
        browser.evaluate("window.noReloadMarker = 9")
        daemon = read_daemon_file(env.paths.daemon_json)
        assert daemon is not None
        os.kill(daemon["pid"], signal.SIGKILL)
        deadline = time.monotonic() + PATIENCE_S
        while procs.is_running(daemon["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        browser.wait_for("document.getElementById('live').textContent !== 'live'", PATIENCE_S, "the stream lost")
        env.engine.status(ENV)  # any command brings the daemon back (its watchdog may have already)
        env.note_pids()
        assert env.engine.dashboard_url(ENV) == url  # the same port and token
        browser.wait_for("document.getElementById('live').textContent === 'live'", 30.0, "the stream back")
        env.route("hello-backend", **{old: 0, new: 100})
        browser.wait_for(f"document.querySelector('#graph g.edge[data-to=\"vn_hello_backend_{new}\"]')"
                         ".dataset.weight === '100'", PATIENCE_S, "a change after the restart")
        assert browser.evaluate("window.noReloadMarker") == 9
