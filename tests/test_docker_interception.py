"""A task's ProxyConfiguration enforced in its network namespace, with real containers.

The pieces the docker runtime is made of, checked on their own: a pause container holds the task's
namespace on an internal network, the interception rules are installed in it, the sidecar is a host
process whose listeners are in that namespace and which runs as the ignored user, and the app knows
nothing of any proxy (no HTTP_PROXY). Its calls still reach the sidecar, which refuses what is not a
declared backend; inbound calls to the app's port reach it through the sidecar.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpipe.engines.local.tasks.dockerhost import ensure_pause_image, ensure_python_image
from meshpipe.engines.local.tasks.interception import ProxyConfiguration, iptables_rules
from meshpipe.engines.local.tasks.processes import free_port
from support.docker import TEST_LABEL, docker_or_skip, remove_labelled

pytestmark = pytest.mark.e2e

CFG = ProxyConfiguration(app_ports=(80,), proxy_ingress_port=15000, proxy_egress_port=15001, ignored_uid=1337,
                         egress_ignored_ips=("169.254.170.2", "169.254.169.254"))

# An app that serves on port 80 and, when asked, calls a URL itself: with urllib, which would honour
# HTTP_PROXY if there were one (there is none).
APP = """
import http.server, urllib.request
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith('/call/'):
            url = 'http://' + self.path[len('/call/'):]
            try:
                r = urllib.request.urlopen(url, timeout=2)
                body = b'%d ' % r.status + r.read()
            except urllib.error.HTTPError as e:
                body = b'%d ' % e.code + e.read()
            except Exception as e:
                body = b'ERR ' + repr(e).encode()
        else:
            body = b'app says hi'
        self.send_response(200); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.HTTPServer(('0.0.0.0', 80), H).serve_forever()
"""


@pytest.fixture(scope="module")
def client() -> Any:
    return docker_or_skip()


@pytest.fixture
def task(client: Any) -> Iterator[dict[str, Any]]:
    """A task without its rules: network, pause container, app container; removed even on failure."""
    run = uuid.uuid4().hex[:10]
    labels = {TEST_LABEL: run}
    pause_image, python_image = ensure_pause_image(client), ensure_python_image(client)
    try:
        net = client.networks.create(f"mp-test-{run}", internal=True, labels=labels)
        # The namespace holder also holds the task's /etc/hosts: the names of the environment.
        pause = client.containers.run(pause_image, detach=True, network=net.name, labels=labels,
                                      name=f"mp-test-{run}-pause",
                                      extra_hosts={"hello-backend.demo.local": "10.255.0.1"})
        pause.reload()
        pid = pause.attrs["State"]["Pid"]
        ip = pause.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]
        yield {"client": client, "pid": pid, "ip": ip, "labels": labels, "pause": pause, "image": python_image,
               "run": run}
    finally:
        remove_labelled(client, TEST_LABEL, run)


def _start(task: dict[str, Any], rules: bool) -> tuple[subprocess.Popen[bytes], int]:
    netns = f"/proc/{task['pid']}/ns/net"
    if rules:
        subprocess.run(["nsenter", f"--net={netns}", "iptables-restore", "--noflush"], input=iptables_rules(CFG),
                       text=True, check=True)
    admin = free_port()
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "meshpipe.engines.local.dataplane", "--mode", "sidecar", "--admin-port", str(admin),
         "--ingress-port", "15000", "--egress-port", "15001", "--app-port", "80", "--service", "hello-web",
         "--version", "v1", "--allowed-backend", "hello-backend.demo.local", "--netns", netns, "--run-as", "1337"],
        stdout=subprocess.DEVNULL)
    task["client"].containers.run(task["image"], ["python", "-c", APP], detach=True, labels=task["labels"],
                                  network_mode=f"container:{task['pause'].id}",
                                  name=f"mp-test-{task['run']}-app")
    return sidecar, admin


def _get(url: str, timeout: float = 5.0) -> bytes:
    return bytes(urllib.request.urlopen(url, timeout=timeout).read())


def _until(url: str, deadline_s: float = 20.0) -> bytes:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return _get(url, 2.0)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stats(admin: int) -> dict[str, Any]:
    return dict(json.loads(_get(f"http://127.0.0.1:{admin}/stats")))


def _stop(sidecar: subprocess.Popen[bytes]) -> None:
    sidecar.terminate()
    try:
        sidecar.wait(10)
    except subprocess.TimeoutExpired:
        sidecar.kill()
        sidecar.wait()


def test_an_app_that_knows_no_proxy_is_meshed_both_ways(task: dict[str, Any]) -> None:
    sidecar, admin = _start(task, rules=True)
    try:
        ip = task["ip"]
        # Inbound: the app's port on the task's address is the sidecar's ingress.
        assert _until(f"http://{ip}:80/") == b"app says hi"
        assert _stats(admin)["listeners"]["ingress"]["requests"] >= 1
        # Outbound, straight to an address: the sidecar refuses it (not a declared backend).
        answer = _get(f"http://{ip}:80/call/10.9.9.9/secret")
        assert answer.startswith(b"403 egress to 10.9.9.9 refused: not a declared backend"), answer
        # Outbound, by a declared backend's name: the sidecar takes it (no endpoints yet: 503 from it).
        answer = _get(f"http://{ip}:80/call/hello-backend.demo.local/data")
        assert answer.startswith(b"503"), answer
        egress = _stats(admin)["listeners"]["egress"]
        assert egress["requests"] == 2 and egress["local_replies"] == 2
        # The sidecar is the ignored user, so its own connections are not sent back to itself.
        uids = Path(f"/proc/{sidecar.pid}/status").read_text().split("Uid:")[1].split()[:4]
        assert uids == ["1337"] * 4
    finally:
        _stop(sidecar)


def test_without_the_rules_the_app_goes_around_its_sidecar(task: dict[str, Any]) -> None:
    """The negative control: the same task without interception; nothing the app sends reaches the
    sidecar, and the app's port is the app itself."""
    sidecar, admin = _start(task, rules=False)
    try:
        ip = task["ip"]
        assert _until(f"http://{ip}:80/") == b"app says hi"
        answer = _get(f"http://{ip}:80/call/10.9.9.9/secret")
        assert not answer.startswith(b"403"), answer  # no route out of the internal network: a plain error
        stats = _stats(admin)["listeners"]
        assert stats["egress"]["requests"] == 0 and stats["ingress"]["requests"] == 0
    finally:
        _stop(sidecar)
