"""The dashboard's server and live hub against a fake environment: access by token and cookie, what each
page is sent, pushes on change, and no work while no page is open. Real HTTP on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meshpipe.engines.local.dataplane.metrics import BUCKET_BOUNDS_MS, UpstreamStats
from meshpipe.engines.local.observe.dashboard import views
from meshpipe.engines.local.observe.dashboard.live import SERVICE, TOPOLOGY, LiveHub, View
from meshpipe.engines.local.observe.dashboard.server import DashboardServer, cookie_name, load_assets
from meshpipe.engines.local.observe.metrics_view import Point, ProxyScrape
from meshpipe.engines.local.state.store import EventRow

TOKEN = "t0ken-" + "x" * 40
ENV = "demo"


def _status(weights: dict[str, int]) -> dict[str, Any]:
    return {
        "environment": ENV, "namespace": "demo.local", "generation": 7, "ingress_url": "http://127.0.0.1:9",
        "services": [{"name": "hello", "virtual_service": "hello.demo.local", "router": "vr-hello",
                      "route": {"service": "hello", "targets": [{"version": v, "weight": w} for v, w in weights.items()]},
                      "versions": [{"service": "hello", "version": v, "commit": v + "00", "status": "CREATE_COMPLETE",
                                    "weight": w, "healthy_tasks": 1, "desired_tasks": 1} for v, w in weights.items()]}],
        "gateway_routes": [{"name": "r-hello", "prefix": "/hello", "service": "hello"}],
        "tasks": [{"task_id": f"hello-{v}-1", "service": "hello", "version": v, "actual": "HEALTHY", "restarts": 0}
                  for v in weights],
    }


def _scrape(requests: dict[str, int], fives: int = 0) -> list[ProxyScrape]:
    clusters = []
    for version, n in requests.items():
        stats = UpstreamStats()
        for _ in range(n):
            stats.requests += 1
            stats.by_class[2] += 1
            stats.latency.record(3.0)
        stats.by_class[2] -= fives
        stats.by_class[5] += fives
        clusters.append({"name": f"cds_egress_demo_vn-hello-{version}_http_80", "direction": "egress",
                         "service": "hello", "version": version, **stats.raw()})
    return [ProxyScrape("gateway", 1, {"bucket_count": len(BUCKET_BOUNDS_MS), "clusters": clusters})]


class FakeSource:
    """An environment whose status and traffic the test sets; it counts the scrapes it was asked for."""

    def __init__(self) -> None:
        self.weights = {"aaaa1111": 100, "bbbb2222": 0}
        self.requests = {"aaaa1111": 0}
        self.events_rows: list[EventRow] = [EventRow(1, "2026-01-01T00:00:00.00Z", "route", "hello", None, "route set")]
        self.scrapes = 0
        self.scraped = asyncio.Event()
        self.rollout_doc: dict[str, Any] | None = None
        self.status_reads = 0

    async def status(self) -> dict[str, Any]:
        self.status_reads += 1
        return copy.deepcopy(_status(self.weights))

    async def scrape(self) -> list[ProxyScrape]:
        self.scrapes += 1
        self.scraped.set()
        return _scrape(self.requests)

    def backends(self) -> dict[str, set[str]]:
        return {}

    def runs(self, service: str) -> list[dict[str, Any]]:
        return [{"run_id": "r1", "service": service, "status": "Failed", "commit": "aaaa1111", "version": None,
                 "ref": "refs/heads/main", "started_at": "x", "finished_at": "y",
                 "stages": [{"name": "Source", "status": "Succeeded", "log": "ok"},
                            {"name": "Build", "status": "Failed", "log": "boom " * 1000}]}]

    def events(self, after: int, limit: int) -> list[EventRow]:
        return [e for e in self.events_rows if e.id > after][-limit:]

    async def rollout(self, service: str) -> dict[str, Any] | None:
        return self.rollout_doc


def run(make: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(make(), 30))


async def _started(source: FakeSource, sample_every: float = 1000.0) -> tuple[DashboardServer, str]:
    server = DashboardServer(source, TOKEN, ENV, sample_every=sample_every)
    port = await server.start()
    return server, f"http://127.0.0.1:{port}"


async def _read_event(resp: aiohttp.ClientResponse, name: str) -> Any:
    """The data of the next server-sent event called ``name``."""
    event = None
    while True:
        line = (await resp.content.readline()).decode()
        if not line:
            raise AssertionError("the stream ended")
        line = line.rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == name:
            return json.loads(line[len("data: "):])


# --- access -------------------------------------------------------------------------------------------------

def test_pages_need_the_token_which_becomes_a_strict_httponly_cookie_and_leaves_the_address() -> None:
    async def main() -> None:
        server, base = await _started(FakeSource())
        try:
            async with aiohttp.ClientSession() as plain:
                for path in ("/", "/services/hello", "/events", "/assets/app.js", "/api/snapshot", "/api/stream"):
                    async with plain.get(base + path) as resp:
                        assert resp.status == 403, path
                async with plain.get(base + "/favicon.ico") as resp:
                    assert resp.status == 200  # only the icon: browsers ask for it on a refused page too
                async with plain.get(base + "/?token=wrong", allow_redirects=False) as resp:
                    assert resp.status == 403
                    assert "set-cookie" not in resp.headers
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                async with browser.get(f"{base}/services/hello?token={TOKEN}&x=1", allow_redirects=False) as resp:
                    assert resp.status == 303
                    assert resp.headers["Location"] == "/services/hello?x=1"
                    cookie = resp.headers["Set-Cookie"]
                    assert cookie.startswith(f"{cookie_name(ENV)}={TOKEN};")
                    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
                async with browser.get(base + "/") as resp:
                    assert resp.status == 200
                    page = await resp.text()
                    assert '<script src="/assets/app.js"' in page and TOKEN not in page
                    csp = resp.headers["Content-Security-Policy"]
                    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                    assert resp.headers["X-Frame-Options"] == "DENY"
                async with browser.get(base + "/assets/app.js") as resp:
                    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript")
                async with browser.get(base + "/assets/secret.txt") as resp:
                    assert resp.status == 404
                async with browser.get(base + "/api/snapshot?view=nothing") as resp:
                    assert resp.status == 400
                async with browser.get(base + "/api/snapshot?view=service&service=../x") as resp:
                    assert resp.status == 400
                # A name other than 127.0.0.1 or localhost (DNS rebinding) is refused even with the cookie.
                async with browser.get(base + "/", headers={"Host": "attacker.example"}) as resp:
                    assert resp.status == 403
            async with aiohttp.ClientSession(cookies={cookie_name("other"): TOKEN}) as other_env, \
                    other_env.get(base + "/") as resp:
                assert resp.status == 403  # another environment's cookie name does not open this one
        finally:
            await server.stop()

    run(main)


def test_assets_are_package_data_and_fetch_nothing_from_elsewhere() -> None:
    assets = load_assets()
    assert set(assets) == {"index.html", "app.js", "app.css", "favicon.svg"}
    for name, body in assets.items():
        text = body.decode()
        assert not re.search(r"(?:https?:)?//(?!www\.w3\.org/2000/svg)[a-z0-9.-]+\.[a-z]{2,}", text), name
    html = assets["index.html"].decode()
    assert "<script>" not in html and "style=" not in html  # nothing inline: the page's policy forbids it


# --- what pages are sent --------------------------------------------------------------------------------------

def test_snapshots_give_the_topology_with_weights_and_a_service_with_runs_and_rollout() -> None:
    async def main() -> None:
        source = FakeSource()
        source.rollout_doc = {"status": "running", "candidate": "bbbb2222", "stable": "aaaa1111", "step": 1,
                              "steps": 3, "windows": [{"number": 1, "verdict": "passed"}]}
        hub = LiveHub(source, sample_every=1000.0)
        topo = await hub.snapshot(View(TOPOLOGY))
        assert topo["nav"] == {"environment": ENV, "ingress_url": "http://127.0.0.1:9", "services": ["hello"]}
        weights = dict(re.findall(r'data-to="vn_hello_(\w+)" data-weight="(\d+)"', topo["topology"]["svg"]))
        assert weights == {"aaaa1111": "100", "bbbb2222": "0"}
        assert [v["weight"] for v in topo["topology"]["services"][0]["versions"]] == [100, 0]
        page = await hub.snapshot(View(SERVICE, "hello"))
        service = page["service"]
        assert [v["version"] for v in service["versions"]] == ["aaaa1111", "bbbb2222"]
        assert service["versions"][0]["tasks"] == [{"task_id": "hello-aaaa1111-1", "actual": "HEALTHY", "restarts": 0}]
        build = service["runs"][0]["stages"][1]
        assert build["status"] == "Failed" and len(build["log"]) == views.MAX_LOG_CHARS
        assert "log" not in service["runs"][0]["stages"][0]  # only a failed stage's log travels
        assert service["rollout"]["windows"] == [{"number": 1, "verdict": "passed"}]
        assert page["events"][0]["message"] == "route set"
        assert (await hub.snapshot(View(SERVICE, "nope")))["service"] == {"service": "nope", "missing": True}
        assert hub.samples == 0 and not hub.running  # snapshots read no proxy and start nothing

    run(main)


def test_topology_rates_come_from_the_last_interval_and_idle_versions_get_none() -> None:
    latest = {("hello", "a"): Point(10.0, 20, 10.0, 0.95, 3.0, 9.0), ("hello", "b"): Point(10.0, 0, 0.0, None, None, None)}
    assert views.rates_of(latest) == {"hello": {"a": (10.0, pytest.approx(0.05))}}
    svg = views.topology(_status({"a": 90, "b": 10}), {}, latest)["svg"]
    assert "10.0 req/s, 5.0% 5xx" in svg and "#dc2626" in svg  # 5 % errors: red


# --- live updates ---------------------------------------------------------------------------------------------

def test_an_idle_dashboard_does_nothing_and_sampling_lives_exactly_as_long_as_a_page() -> None:
    async def main() -> None:
        source = FakeSource()
        hub = LiveHub(source, sample_every=0.01)
        hub.changed("route set")  # nobody listens: nothing is scheduled
        await asyncio.sleep(0)
        assert not hub.running and source.scrapes == 0
        first = await hub.subscribe(View(TOPOLOGY))
        second = await hub.subscribe(View(SERVICE, "hello"))
        assert hub.running
        while source.scrapes < 3:
            source.scraped.clear()
            await source.scraped.wait()
        hub.unsubscribe(first)
        assert hub.running  # one page is still open
        tasks = list(hub._tasks)
        hub.unsubscribe(second)
        assert not hub.running
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(tasks) == 2 and all(t.cancelled() for t in tasks)
        after = source.scrapes
        await asyncio.sleep(0.05)  # five sampling periods: a live sampler would have scraped
        assert source.scrapes == after
        assert first.closed and second.closed

    run(main)


def test_a_weight_change_is_pushed_on_publish_without_waiting_for_a_sample() -> None:
    async def main() -> None:
        source = FakeSource()
        server, base = await _started(source, sample_every=1000.0)  # the sampler would not come round again
        try:
            async with aiohttp.ClientSession(cookies={cookie_name(ENV): TOKEN}) as browser, \
                    browser.get(base + "/api/stream?view=topology") as resp:
                assert resp.headers["Content-Type"] == "text/event-stream"
                first = await _read_event(resp, "topology")
                assert [v["weight"] for v in first["services"][0]["versions"]] == [100, 0]
                await source.scraped.wait()
                source.weights = {"aaaa1111": 40, "bbbb2222": 60}
                server.changed("route r-hello set")  # what the daemon's publisher calls
                pushed = await _read_event(resp, "topology")
                assert [v["weight"] for v in pushed["services"][0]["versions"]] == [40, 60]
                assert 'data-to="vn_hello_bbbb2222" data-weight="60"' in pushed["svg"]
                assert server.hub.running
            # The page closed: its stream's handler ends and the sampler stops with it.
            while server.hub.running:
                await asyncio.sleep(0.01)
            assert not server.hub.subscribers
        finally:
            await server.stop()

    run(main)


def test_a_service_page_gets_counters_and_only_new_points_and_nothing_when_nothing_changed() -> None:
    async def main() -> None:
        source = FakeSource()
        hub = LiveHub(source, sample_every=1000.0)
        sub = await hub.subscribe(View(SERVICE, "hello"))
        hub._stop_tasks()  # drive the samples by hand

        def drain() -> dict[str, list[Any]]:
            got: dict[str, list[Any]] = {}
            while not sub.queue.empty():
                raw = sub.queue.get_nowait()
                assert raw is not None
                head, _, body = raw.decode().partition("\ndata: ")
                got.setdefault(head.removeprefix("event: "), []).append(json.loads(body))
            return got

        drain()
        reads = source.status_reads
        for n in (10, 25, 25):
            source.requests = {"aaaa1111": n}
            await hub.sample()
            await hub._refresh(list(hub.subscribers))
        got = drain()
        series = got["series"]
        assert [s["totals"]["aaaa1111"]["requests"] for s in series] == [10, 25, 25]
        # The first sample is the baseline; each later one adds exactly one new point per version.
        assert [len(s["points"].get("aaaa1111", [])) for s in series] == [0, 1, 1]
        assert [s["points"]["aaaa1111"][0][1] for s in series[1:]] == [15, 0]
        assert "service" not in got and "nav" not in got  # unchanged documents are not sent again
        assert source.status_reads == reads  # samples with nothing new do not read the daemon's status
        await hub._refresh(list(hub.subscribers))
        assert drain() == {}  # nothing new at all: no message
        source.events_rows.append(EventRow(2, "t", "task", "other", None, "not this service's"))
        source.events_rows.append(EventRow(3, "t", "task", "hello", "aaaa1111", "task restarted"))
        source.weights = {"aaaa1111": 50, "bbbb2222": 50}
        await hub._refresh(list(hub.subscribers))
        got = drain()
        assert [e["id"] for e in got["events"][0]] == [3]
        assert source.status_reads == reads + 1  # a new event: the status is read again
        assert [v["weight"] for v in got["service"][0]["versions"]] == [50, 50]
        hub.close()

    run(main)


def test_a_page_that_stops_reading_is_dropped_not_buffered_forever() -> None:
    async def main() -> None:
        source = FakeSource()
        hub = LiveHub(source, sample_every=1000.0)
        sub = await hub.subscribe(View(TOPOLOGY))
        for i in range(200):
            sub.send("events", [i], dedupe=False)
        assert sub.closed and sub.queue.qsize() == 1 and sub.queue.get_nowait() is None
        hub.close()

    run(main)


# --- the command and the README -------------------------------------------------------------------------------

def test_a_browser_is_opened_only_where_one_can_show_the_page() -> None:
    from meshpipe.cli.observe_cmds import browser_available

    assert not browser_available({}, "linux")  # a server or a container: print the address only
    assert not browser_available({"TERM": "xterm"}, "linux")  # a terminal is no browser
    assert browser_available({"DISPLAY": ":0"}, "linux")
    assert browser_available({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert browser_available({"BROWSER": "firefox"}, "linux")
    assert browser_available({}, "darwin") and browser_available({}, "win32")


def test_the_readme_shows_the_dashboard_with_pictures_in_docs() -> None:
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "meshpipe dashboard" in readme
    pictures = re.findall(r"!\[[^\]]*\]\((docs/dashboard[^)]*\.png)\)", readme)
    assert pictures
    for picture in pictures:
        assert (root / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", picture


def test_the_topology_of_20_services_by_3_versions_has_every_node_and_no_overlaps() -> None:
    status = _status({})
    status["services"] = []
    for i in range(20):
        name = f"svc-{i:02d}"
        status["services"].append({"name": name, "versions": [
            {"version": f"{i:02d}{j:06x}", "weight": w, "status": "CREATE_COMPLETE", "healthy_tasks": 1,
             "desired_tasks": 1} for j, w in enumerate((80, 15, 5))]})
    status["gateway_routes"] = [{"name": f"r-svc-{i:02d}", "prefix": f"/svc-{i:02d}", "service": f"svc-{i:02d}"}
                                for i in range(20)]
    calls = {f"svc-{i:02d}": {f"svc-{i + 1:02d}"} for i in range(0, 19, 2)}
    svg = views.topology(status, calls, {})["svg"]
    boxes = [tuple(float(n) for n in m) for m in
             re.findall(r'<g class="node [a-z]+" id="[^"]+"><rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" '
                        r'height="([\d.]+)"', svg)]
    assert len(boxes) == 1 + 20 + 20 + 60  # ingress, gateway routes, services, versions
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    assert len(re.findall(r'data-weight="80"', svg)) == 20


def test_a_restarted_dashboard_takes_its_port_again_when_free_else_another(tmp_path: Path) -> None:
    import socket

    port_file = tmp_path / "dashboard.port"

    async def serve_once() -> int:
        server = DashboardServer(FakeSource(), TOKEN, ENV, sample_every=1000.0)
        port = await server.start(port_file=port_file)
        await server.stop()
        return port

    async def main() -> None:
        first = await serve_once()
        assert port_file.read_text().strip() == str(first)
        assert await serve_once() == first  # open pages reconnect to the same address
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", first))
            taken.listen()
            other = await serve_once()
        assert other != first and port_file.read_text().strip() == str(other)

    run(main)
