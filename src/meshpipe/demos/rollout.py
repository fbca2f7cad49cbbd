"""``meshpipe demo --rollout``: progressive delivery from a git push, for real, on this machine.

hello-backend gets a manifest with a ``Rollout:`` section and steady traffic through the ingress. Then a
bad version (one request in five answered 500) is pushed, and the environment rolls it back by itself,
saying why; then a good one, which it promotes step by step. Nobody runs a command after ``git push``:
the demo only prints what the daemon decides, as ``meshpipe events`` and ``meshpipe rollout status``
show it.
"""

from __future__ import annotations

import http.client
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from meshpipe.demos.walkthrough import (
    IDENTITY,
    DemoEngine,
    DemoError,
    Narrator,
    bundled_manifest,
    open_demo_engine,
)
from meshpipe.errors import MeshpipeError, NotFoundError
from meshpipe.git import clone, commit_all, push
from meshpipe.mesh.routing import make_gateway_route
from meshpipe.status import RolloutStatus

if TYPE_CHECKING:
    from rich.console import RenderableType

    # How a rollout's status is drawn: the command line passes its own (``meshpipe rollout status``).
    RolloutView = Callable[[dict[str, Any]], RenderableType]

ENV = "demo"
SERVICE = "hello-backend"
PREFIX = "/backend"
PATH = f"{PREFIX}/data"
POLICY = ("\nRollout:\n"
          "  Strategy: canary\n"
          "  Steps: [20, 50, 100]\n"
          "  Interval: {interval}\n"
          "  Analysis:\n"
          "    MinSuccessRate: 99\n"
          "    MaxP99IncreasePercent: 50\n"
          "    MinRequests: 20\n"
          "    FailedWindows: 1\n")
PIPELINE_TIMEOUT_SECONDS = 180.0
ROLLOUT_TIMEOUT_SECONDS = 120.0
LOAD_RPS = 60


def manifest(*extra_args: str, interval: int) -> str:
    """The bundled hello-backend manifest with more command words and the demo's rollout policy."""
    text = bundled_manifest(f"{SERVICE}-cfg").decode()
    for arg in extra_args:
        text = text.rstrip("\n") + f'\n    - "{arg}"\n'
    return text + POLICY.format(interval=interval)


class Traffic:
    """A thread sending GETs to the ingress at a steady pace; counts answers by version and status."""

    def __init__(self, port: int, rps: int = LOAD_RPS) -> None:
        self.port, self.pause = port, 1.0 / rps
        self.counts: Counter[tuple[str, int]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo traffic")

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", PATH)
                resp = conn.getresponse()
                resp.read()
                self.counts[(resp.getheader("x-meshpipe-version") or "?", resp.status)] += 1
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
                self.counts[("?", 0)] += 1
            self._stop.wait(max(0.0, self.pause - (time.monotonic() - started)))
        if conn is not None:
            conn.close()

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def snapshot(self) -> Counter[tuple[str, int]]:
        return Counter(self.counts)


@dataclass
class RolloutDemoResult:
    home: Path
    ingress_url: str = ""
    first: str = ""
    bad: str = ""
    good: str = ""
    bad_outcome: dict[str, Any] = field(default_factory=dict)
    good_outcome: dict[str, Any] = field(default_factory=dict)
    served: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> "version status" -> count
    seconds: dict[str, float] = field(default_factory=dict)


class RolloutWalkthrough(Narrator):
    def __init__(self, engine: DemoEngine, home: Path, console: Console, interval: int,
                 view: RolloutView | None = None) -> None:
        self.engine = engine
        self.view = view
        self.console = console
        self.interval = interval
        self.workdir = home / "demo-rollout-workdir"
        self.result = RolloutDemoResult(home)
        self.traffic: Traffic | None = None
        self._seen_events = 0

    def push(self, text: str, message: str) -> str:
        (self.workdir / "manifest.yaml").write_text(text)
        self.command(f'git commit -am "{message}" && git push')
        commit = commit_all(self.workdir, message, IDENTITY)
        for line in push(self.workdir).splitlines():
            self.say(f"remote: {line}", "dim")
        version = commit[:8]
        run = self.engine.pipeline_wait(ENV, SERVICE, timeout=PIPELINE_TIMEOUT_SECONDS, commit=version)
        if run.status != "Succeeded":
            raise DemoError(f"the pipeline of {version} ended {run.status}",
                            hint=f"see meshpipe pipeline logs {SERVICE} --env {ENV}")
        self.say(f"pipeline run {run.run_id}: Source → Build → Deploy succeeded; version {version} deployed")
        return version

    def follow(self, version: str) -> dict[str, Any]:
        """Print the daemon's rollout decisions as they happen until the rollout of ``version`` ends."""
        self.command(f"meshpipe events {SERVICE} --env {ENV}    # as they happen")
        deadline = time.monotonic() + ROLLOUT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            self._print_new_events()
            try:
                status = self.engine.rollout_status(ENV, SERVICE)
            except NotFoundError:
                status = {}
            if status.get("candidate") == version and status.get("status") != RolloutStatus.RUNNING:
                self._print_new_events()
                return status
            time.sleep(0.25)
        raise DemoError(f"the rollout of {version} did not end within {ROLLOUT_TIMEOUT_SECONDS:g} s",
                        hint=f"see meshpipe rollout status {SERVICE} --env {ENV}")

    def _print_new_events(self) -> None:
        events = [e for e in self.engine.events(ENV, SERVICE, limit=500) if e.kind == "rollout"]
        for e in events[self._seen_events:]:
            message = e.message
            bad = message.startswith("rolled back") or (message.startswith("window") and "FAILED" in message)
            style = "red" if bad else "green" if message.startswith("promoted") else ""
            self.say(f"{e.at[11:23]}  {message}", style)
        self._seen_events = len(events)

    def served_since(self, before: Counter[tuple[str, int]]) -> dict[str, int]:
        assert self.traffic is not None
        now = self.traffic.snapshot()
        return {f"{v} {s or 'no answer'}": n - before.get((v, s), 0) for (v, s), n in sorted(now.items())
                if n - before.get((v, s), 0)}

    def release(self, kind: str, expected: str, message: str, *args: str) -> tuple[str, dict[str, Any]]:
        """Push the manifest with ``args`` and follow the new version's rollout to its end, which must be
        ``expected``; what the traffic got meanwhile is kept as ``served[kind]``."""
        assert self.traffic is not None
        before = self.traffic.snapshot()
        version = self.push(manifest(*args, interval=self.interval), message)
        outcome = self.follow(version)
        self.result.served[kind] = self.served_since(before)
        if outcome["status"] != expected:
            raise DemoError(f"the {kind} version was {outcome['status']}, not {expected}: {outcome['reason']}")
        return version, outcome

    def run(self) -> RolloutDemoResult:
        r = self.result
        started = time.monotonic()
        self.title("1. An environment, hello-backend's pipeline, and /backend on the ingress")
        self.command(f"meshpipe env create {ENV}")
        r.ingress_url = self.engine.env_create(ENV).ingress_url or self.engine.ingress_url(ENV)
        self.say(f"ingress: {r.ingress_url}", "bold")
        self.command(f"meshpipe pipeline create {SERVICE} --env {ENV}")
        pipeline = self.engine.pipeline_create(ENV, SERVICE)
        self.command(f"meshpipe route gateway r-backend --prefix {PREFIX} --service {SERVICE} --env {ENV}")
        self.engine.gateway_route_set(ENV, make_gateway_route("r-backend", PREFIX, SERVICE, f"{ENV}.local"))
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.command(f"git clone {pipeline.clone_url} {self.workdir.name}")
        clone(pipeline.clone_url, self.workdir)
        r.seconds["setup"] = time.monotonic() - started

        started = time.monotonic()
        self.title("2. The first version, with a rollout policy in its manifest")
        for line in POLICY.format(interval=self.interval).strip("\n").splitlines():
            self.say(line, "dim")
        r.first = self.push(manifest(interval=self.interval), "Baseline with a rollout policy")
        self.follow(r.first)
        port = int(r.ingress_url.rsplit(":", 1)[1])
        self.command(f"meshpipe load {r.ingress_url}{PATH} --rps {LOAD_RPS} --duration ...    # in the background")
        self.traffic = Traffic(port).start()
        r.seconds["first"] = time.monotonic() - started

        started = time.monotonic()
        self.title("3. A bad version: one request in five answers 500")
        r.bad, r.bad_outcome = self.release("bad", RolloutStatus.ROLLED_BACK, "Oops: a bad change", "-g Oops", "--fail-rate 0.2")
        self.say(f"rolled back by itself: {r.bad_outcome['reason']}", "bold red")
        self.say("answers while it ran: " + ", ".join(f"{k}: {n}" for k, n in r.served["bad"].items()))
        self.say("(the mesh retried most of the 500s on another try, so clients saw few of them; the rollout "
                 "judges every try)", "dim")
        r.seconds["bad"] = time.monotonic() - started

        started = time.monotonic()
        self.title("4. A good version: a new greeting")
        r.good, r.good_outcome = self.release("good", "promoted", "New greeting", "-g Yo")
        self.say(f"promoted by itself after {len(r.good_outcome['windows'])} passed windows", "bold green")
        self.say("answers while it ran: " + ", ".join(f"{k}: {n}" for k, n in r.served["good"].items()))
        self.command(f"meshpipe rollout status {SERVICE} --env {ENV}")
        if self.view is not None:
            self.console.print(self.view(r.good_outcome))
        r.seconds["good"] = time.monotonic() - started
        return r

    def close(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None


def run_rollout_demo(*, home: Path | None = None, keep: bool = False, console: Console | None = None,
                     tasks_per_version: int | None = None, interval: int = 5,
                     view: RolloutView | None = None) -> RolloutDemoResult:
    """Run the rollout walkthrough on the local engine in ``home``; clean up unless ``keep``. ``view`` draws
    the promoted rollout's status at the end (as ``meshpipe rollout status`` does)."""
    console = console or Console()
    home, engine = open_demo_engine(home, tasks_per_version)
    console.print(f"[bold]meshpipe demo --rollout[/bold]: rollouts from a git push (home {escape(str(home))})")
    walk = RolloutWalkthrough(engine, home, console, interval, view)
    try:
        result = walk.run()
    finally:
        walk.close()
        if keep:
            console.print(f"[yellow]The environment {ENV} is kept; delete it with 'meshpipe env delete {ENV}'.[/yellow]")
        else:
            walk.title("Clean up")
            walk.command(f"meshpipe env delete {ENV} --yes")
            try:
                engine.env_delete(ENV)
            except MeshpipeError as exc:
                console.print(f"  [red]could not delete the environment: {escape(exc.message)}[/red]")
            shutil.rmtree(walk.workdir, ignore_errors=True)
    console.print()
    console.print(f"[bold]Done[/bold]: {result.bad} rolled back ({escape(result.bad_outcome['reason'])}); "
                  f"{result.good} promoted.")
    return result
