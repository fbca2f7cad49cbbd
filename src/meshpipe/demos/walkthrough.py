"""``meshpipe demo``: the whole walkthrough, steps 1-9, for real, on this machine.

Each step runs what a person would run, and prints it: the meshpipe command (executed through the
engine's public operations, as the command line does), the git commands (real clones, commits and pushes to the environment's config repos,
whose hook starts the pipelines), and the requests (real HTTP to the ingress on 127.0.0.1). The original sample's own
manifests are used as they are; their images are mapped to the bundled Python samples.
"""

from __future__ import annotations

import http.client
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from meshpipe.engines.base import Engine, EventSource, PipelineWaiter, RolloutStatusSource, VersionInfo
from meshpipe.errors import ConflictError, MeshpipeError, NotFoundError, OperationError
from meshpipe.git import GitIdentity, clone, commit_all, push
from meshpipe.mesh.routing import WeightedTarget, make_gateway_route
from meshpipe.pipeline.runs import PipelineRun

ENV = "demo"
WEB, BACKEND = "hello-web", "hello-backend"
GATEWAY_ROUTE, GATEWAY_PREFIX = "r-ingress-hello-service", "/hello-service"
HELLO_PATH = f"{GATEWAY_PREFIX}/hello/Bob"
OLD_PAGE_START = "Hello Bob<br>Welcome to our world!<br><br>timestamp: "
NEW_PAGE_START = "Yo Bob<br>Have a great day!<br><br>timestamp: "
IDENTITY = GitIdentity("meshpipe demo", "demo@meshpipe.invalid")
PIPELINE_TIMEOUT_SECONDS = 180.0
SERVING_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 10.0
PROMOTED_SAMPLE = 100  # requests checked after promotion


@runtime_checkable
class SampleImageBuilder(Protocol):
    """An engine that can build a bundled sample's container image on this machine (the local engine)."""

    def build_sample_image(self, service: str, tag: str) -> str: ...


class DemoEngine(Engine, PipelineWaiter, EventSource, RolloutStatusSource, Protocol):
    """What the demos ask of an engine: its public operations, as the command line uses them."""

    home: Path  # where its environments live

    def ingress_url(self, env: str) -> str: ...
RUN_MARK = "meshpipe: pipeline run "


class DemoError(OperationError):
    """A step of the demo failed; the message names the step, the hint says where to look."""


@dataclass(frozen=True)
class Split:
    """How many responses came from the old version, the new one, or failed."""

    old: int = 0
    new: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        return self.old + self.new + self.errors

    def percent(self, count: int) -> float:
        return 100.0 * count / self.total if self.total else 0.0

    def describe(self) -> str:
        text = f"{self.old} old ({self.percent(self.old):.1f} %), {self.new} new ({self.percent(self.new):.1f} %)"
        return text + (f", {self.errors} failed" if self.errors else "")


@dataclass
class DemoResult:
    """What the walkthrough did and measured."""

    env: str
    home: Path
    ingress_url: str = ""
    web_version: str = ""
    backend_old: str = ""
    backend_new: str = ""
    first_page: str = ""
    canary: Split = field(default_factory=Split)
    promoted: Split = field(default_factory=Split)
    refused_delete: str = ""
    step_seconds: dict[str, float] = field(default_factory=dict)
    kept: bool = False


# What the docker runtime's walkthrough builds and runs in place of the original sample's images.
DOCKER_IMAGES = {"hello-web": "hello-web:66f2a19", "hello-backend": "hello-backend:66f2a19"}


def bundled_manifest(config: str) -> bytes:
    """The original sample's manifests shipped with meshpipe (the same bytes as ``examples/<config>/manifest.yaml``)."""
    return (resources.files("meshpipe.samples") / "cfg" / config / "manifest.yaml").read_bytes()


def bundled_manifest_path(config: str) -> str:
    """Where that manifest is on this machine, for the command the demo shows (one a reader can run)."""
    return str(resources.files("meshpipe.samples") / "cfg" / config / "manifest.yaml")


def classify(status: int, body: str) -> str:
    """``old``, ``new`` or ``error`` for one response of ``/hello-service/hello/Bob``."""
    if status == 200 and body.startswith(OLD_PAGE_START):
        return "old"
    if status == 200 and body.startswith(NEW_PAGE_START):
        return "new"
    return "error"


class IngressClient:
    """Requests to the environment's ingress over one keep-alive connection, on the loopback only."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1") or not parts.port:
            raise DemoError(f"the ingress URL {url!r} is not a local http://127.0.0.1:PORT address")
        self.host, self.port = parts.hostname, parts.port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> tuple[int, str]:
        for attempt in (1, 2):  # a kept-alive connection the server closed is retried once on a new one
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_SECONDS)
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, body
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def count(self, path: str, requests: int) -> Split:
        counts = {"old": 0, "new": 0, "error": 0}
        for _ in range(requests):
            try:
                status, body = self.get(path)
            except (OSError, http.client.HTTPException):
                status, body = 0, ""
            counts[classify(status, body)] += 1
        return Split(counts["old"], counts["new"], counts["error"])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Narrator:
    """How a walkthrough prints: a titled section per step, the commands a person would type, what they said."""

    console: Console

    def title(self, text: str) -> None:
        self.console.print()
        self.console.rule(f"[bold]{escape(text)}[/bold]", align="left")

    def command(self, text: str) -> None:
        self.console.print(f"[bold cyan]$[/bold cyan] {escape(text)}", highlight=False)

    def say(self, text: str, style: str = "") -> None:
        line = f"  {escape(text)}"
        self.console.print(f"[{style}]{line}[/{style}]" if style else line, highlight=False)


class Walkthrough(Narrator):
    """The steps, in order, against one local engine; prints as it goes."""

    def __init__(self, engine: DemoEngine, home: Path, console: Console, requests: int,
                 runtime: str = "process") -> None:
        self.engine = engine
        self.runtime = runtime
        self.home = home
        self.console = console
        self.requests = requests
        self.workdir = home / "demo-workdir"
        self.result = DemoResult(env=ENV, home=home)
        self.clone_urls: dict[str, str] = {}
        self.pending_runs: dict[str, str] = {}  # service -> id of the run its last push started
        self.ingress: IngressClient | None = None

    @contextmanager
    def step(self, key: str, title: str) -> Iterator[None]:
        self.title(title)
        started = time.monotonic()
        try:
            yield
        except DemoError:
            raise
        except MeshpipeError as exc:
            raise self.failure(title, exc.message + (f" ({exc.hint})" if exc.hint else "")) from exc
        except Exception as exc:
            raise self.failure(title, f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.result.step_seconds[key] = time.monotonic() - started

    def failure(self, title: str, message: str, service: str | None = None) -> DemoError:
        where = [f"'meshpipe pipeline logs {svc} --env {ENV}'" for svc in ([service] if service else [WEB, BACKEND])]
        env_dir = self.home / "envs" / ENV
        return DemoError(f"{title} failed: {message}",
                         hint=f"see {' and '.join(where)}, and the daemon's log {env_dir / 'daemon.log'}")

    # --- helpers -------------------------------------------------------------------------------------

    def push_config(self, service: str, config: str, message: str, first: bool) -> str:
        repo_dir = self.workdir / f"{service}-cfg"
        if first:
            self.command(f"cd {self.workdir}")
            self.command(f"git clone {self.clone_urls[service]}")
            clone(self.clone_urls[service], repo_dir)
            self.command(f"cd {service}-cfg")
        self.command(f"cp {bundled_manifest_path(config)} .")
        (repo_dir / "manifest.yaml").write_bytes(self.manifest_bytes(config))
        self.command("git add .")
        self.command(f'git commit -m "{message}"')
        commit = commit_all(repo_dir, message, IDENTITY)
        self.say(f"[main {commit[:8]}] {message}")
        self.command("git push")
        remote = push(repo_dir)
        run_id = None
        for line in remote.splitlines():
            self.say(f"remote: {line}", "dim")
            if line.startswith(RUN_MARK):
                run_id = line[len(RUN_MARK):].split()[0]
        if run_id is None:
            raise self.failure(f"pushing {service}'s configuration",
                               f"the push was kept but no pipeline run started: {remote or 'the hook said nothing'}",
                               service)
        self.pending_runs[service] = run_id
        return commit

    def wait_pipeline(self, service: str) -> PipelineRun:
        self.command(f"meshpipe pipeline wait {service} --env {ENV}")
        run = self.engine.pipeline_wait(ENV, service, self.pending_runs.get(service),
                                        timeout=PIPELINE_TIMEOUT_SECONDS)
        stages = " -> ".join(f"{s.name} {s.status}" for s in run.stages)
        self.say(f"run {run.run_id}: {stages or run.status}", "green" if run.status == "Succeeded" else "red")
        if run.status != "Succeeded":
            failed = next((s for s in run.stages if s.status == "Failed"), None)
            detail = failed.log.strip().splitlines()[-5:] if failed and failed.log else []
            for line in detail:
                self.say(line, "red")
            raise self.failure(f"the {service} pipeline", f"run {run.run_id} ended {run.status}", service)
        if not run.version:
            raise self.failure(f"the {service} pipeline", f"run {run.run_id} reported no version", service)
        self.say(f"version {run.version} deployed: stack {ENV}-{service}-{run.version}, "
                 f"virtual node vn-{service}-{run.version}")
        return run

    def show_versions(self, service: str) -> list[VersionInfo]:
        self.command(f"meshpipe versions {service} --env {ENV}")
        versions = self.engine.versions(ENV, service)
        table = Table(box=None, padding=(0, 1), show_edge=False)
        for column in ("VERSION", "STACK", "STATUS", "WEIGHT", "TASKS"):
            table.add_column(column)
        for v in versions:
            tasks = f"{v.healthy_tasks}/{v.desired_tasks}" if v.desired_tasks is not None else "-"
            table.add_row(v.version, v.stack_name, v.status, str(v.weight), tasks)
        self.console.print(table)
        return versions

    def route(self, service: str, targets: list[tuple[str, int]]) -> float:
        """``meshpipe route set``; returns how long the call took."""
        spec = " ".join(f"{v}={w}" for v, w in targets)
        self.command(f"meshpipe route set {service} {spec} --env {ENV}")
        started = time.monotonic()
        route = self.engine.route_set(ENV, service, tuple(WeightedTarget(v, w) for v, w in targets))
        took = time.monotonic() - started
        shown = ", ".join(f"{t.virtual_node(service)}: {t.weight}" for t in route.targets)
        self.say(f"route {route.name} on {route.router}: {shown}")
        return took

    def curl(self, path: str = HELLO_PATH) -> tuple[int, str]:
        assert self.ingress is not None
        self.command(f"curl {self.result.ingress_url}{path}")
        return self.ingress.get(path)

    def wait_for_page(self, kind: str) -> str:
        """Ask the ingress until a page from the ``kind`` version comes back (bounded)."""
        assert self.ingress is not None
        deadline = time.monotonic() + SERVING_TIMEOUT_SECONDS
        status, body = 0, ""
        while time.monotonic() < deadline:
            try:
                status, body = self.ingress.get(HELLO_PATH)
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, str(exc)
            if classify(status, body) == kind:
                return body
            time.sleep(0.2)
        raise DemoError(f"no {kind} page from {self.result.ingress_url}{HELLO_PATH} within "
                        f"{SERVING_TIMEOUT_SECONDS:g} s; last answer: HTTP {status} {body[:200]!r}")

    # --- the steps -----------------------------------------------------------------------------------

    def build_images(self) -> None:
        """The docker runtime runs the manifests' images: built here, as the original walkthrough builds
        its own, from this machine's files (no registry)."""
        if not isinstance(self.engine, SampleImageBuilder):
            raise DemoError("this engine cannot build the samples' images (--runtime docker needs the local engine)")
        for service in (WEB, BACKEND):
            tag = DOCKER_IMAGES[service]
            self.command(f"docker build -f src/meshpipe/samples/Dockerfile.{service} -t {tag} src")
            self.engine.build_sample_image(service, tag)
            self.say(f"built {tag}")

    def manifest_bytes(self, config: str) -> bytes:
        data = bundled_manifest(config)
        if self.runtime != "docker":
            return data
        # The locally built images instead of the original sample's (same commands: the samples skip the
        # "node server" words the original images' command starts with).
        for service, tag in DOCKER_IMAGES.items():
            data = data.replace(f"wizriz/{service}:66f2a19".encode(), tag.encode())
        return data

    def run(self) -> DemoResult:
        r = self.result

        if self.runtime == "docker":
            with self.step("0", "Step 0: Build the images (docker runtime)"):
                self.build_images()

        with self.step("1", "Step 1: Create the mesh environment"):
            self.command(f"meshpipe env create {ENV}")
            info = self.engine.env_create(ENV)
            r.ingress_url = info.ingress_url or self.engine.ingress_url(ENV)
            self.say(f"environment {info.name}: {info.status}; mesh {ENV}, namespace {ENV}.local, "
                     "ingress gateway vg-ingress")
            self.say(f"ingress: {r.ingress_url}", "bold")
            self.ingress = IngressClient(r.ingress_url)

        with self.step("2", "Step 2: Create the virtual services, virtual routers and service pipelines"):
            for service in (WEB, BACKEND):
                self.command(f"meshpipe pipeline create {service} --env {ENV}")
                pipeline = self.engine.pipeline_create(ENV, service)
                self.clone_urls[service] = pipeline.clone_url
                self.say(f"virtual service {pipeline.virtual_service}, router vr-{service}, "
                         f"pipeline {pipeline.status}")
                self.say(f"clone URL: {pipeline.clone_url}")

        with self.step("3", "Step 3: Deploy the services through their pipelines"):
            if self.workdir.exists():
                shutil.rmtree(self.workdir)
            self.workdir.mkdir(parents=True)
            self.command(f"mkdir {self.workdir}")
            for service in (WEB, BACKEND):
                self.push_config(service, f"{service}-cfg", "Baseline service configuration", first=True)
            r.web_version = self.wait_pipeline(WEB).version or ""
            r.backend_old = self.wait_pipeline(BACKEND).version or ""
            for service in (WEB, BACKEND):
                self.show_versions(service)

        with self.step("4", "Step 4: Configure mesh routing"):
            self.command(f"meshpipe route gateway {GATEWAY_ROUTE} --prefix {GATEWAY_PREFIX} --service {WEB} "
                         f"--env {ENV}")
            gateway_route = make_gateway_route(GATEWAY_ROUTE, GATEWAY_PREFIX, WEB, f"{ENV}.local")
            applied = self.engine.gateway_route_set(ENV, gateway_route)
            self.say(f"vg-ingress: {applied.prefix} -> {applied.virtual_service} (prefix rewritten to /)")
            self.route(WEB, [(r.web_version, 100)])
            self.route(BACKEND, [(r.backend_old, 100)])

        with self.step("5", "Step 5: Test the application"):
            status, body = self.curl()
            if classify(status, body) != "old":
                body = self.wait_for_page("old")
            r.first_page = body
            self.say(body, "bold green")

        with self.step("6", "Step 6: Deploy a new version of the backend"):
            self.command(f"cd {self.workdir / (BACKEND + '-cfg')}")
            self.say('edit manifest.yaml: Command "-g Yo", "-m Have a great day!"', "dim")
            self.push_config(BACKEND, f"{BACKEND}-cfg-v2", "Changed greeting", first=False)
            r.backend_new = self.wait_pipeline(BACKEND).version or ""
            versions = self.show_versions(BACKEND)
            self.say(f"{len(versions)} stacks start with {ENV}-{BACKEND}: one per version, each named by its commit")

        with self.step("7", "Step 7: Canary: 90 % to the old version, 10 % to the new one"):
            self.route(BACKEND, [(r.backend_old, 90), (r.backend_new, 10)])
            assert self.ingress is not None
            self.command(f"for i in $(seq {self.requests}); do curl -s {r.ingress_url}{HELLO_PATH}; echo; done")
            r.canary = self.ingress.count(HELLO_PATH, self.requests)
            self.say(f"observed over {r.canary.total} requests: {r.canary.describe()}", "bold")
            self.command(f"meshpipe version delete {BACKEND} {r.backend_old} --env {ENV}")
            try:
                self.engine.version_delete(ENV, BACKEND, r.backend_old)
            except ConflictError as exc:
                r.refused_delete = exc.message
                self.say(f"refused, as it should be: {exc.message}", "yellow")
            else:
                raise DemoError(f"deleting version {r.backend_old} while it carried 90 % of the traffic was "
                                "not refused")

        with self.step("8", "Step 8: Move all traffic to the new version"):
            self.route(BACKEND, [(r.backend_new, 100)])
            self.wait_for_page("new")
            assert self.ingress is not None
            sample = min(self.requests, PROMOTED_SAMPLE)
            self.command(f"for i in $(seq {sample}); do curl -s {r.ingress_url}{HELLO_PATH}; echo; done")
            r.promoted = self.ingress.count(HELLO_PATH, sample)
            if r.promoted.new == r.promoted.total:
                self.say(f"all {r.promoted.total} responses from the new version: {NEW_PAGE_START}...", "bold green")
            else:
                self.say(f"not all from the new version: {r.promoted.describe()}", "bold red")

        with self.step("9", "Step 9: Delete the old version"):
            self.say(f"(deleting {r.backend_old} was refused in step 7, while it carried 90 % of the traffic; "
                     "now it carries none)", "dim")
            self.command(f"meshpipe version delete {BACKEND} {r.backend_old} --env {ENV}")
            self.engine.version_delete(ENV, BACKEND, r.backend_old)
            self.say(f"stack {ENV}-{BACKEND}-{r.backend_old} deleted, with its virtual node and tasks")
            self.show_versions(BACKEND)
        return r

    def close(self) -> None:
        if self.ingress is not None:
            self.ingress.close()


def make_local_engine(home: Path | None, tasks_per_version: int | None) -> DemoEngine:
    """The local engine, through ``get_engine`` as the command line gets it; in ``home`` (default: meshpipe's)."""
    from meshpipe.engines import get_engine

    options: dict[str, Any] = {"home": home}
    if tasks_per_version is not None:
        options["tasks_per_version"] = tasks_per_version
    return cast("DemoEngine", get_engine("local", **options))


def _environment_exists(engine: DemoEngine) -> bool:
    try:
        return engine.env_status(ENV).status not in ("NOT_FOUND", "DELETED")
    except NotFoundError:
        return False


def open_demo_engine(home: Path | None, tasks_per_version: int | None,
                     engine_factory: Callable[[Path], DemoEngine] | None = None) -> tuple[Path, DemoEngine]:
    """The demo's home (``home``, else meshpipe's) and its engine; refuses a home where the demo environment
    already exists, so a walkthrough never takes over (or deletes) one it did not create."""
    if home is None:
        engine = make_local_engine(None, tasks_per_version)
        home = engine.home
    else:
        home = Path(home).absolute()
        engine = engine_factory(home) if engine_factory else make_local_engine(home, tasks_per_version)
    if _environment_exists(engine):
        raise DemoError(f"an environment named {ENV!r} already exists in {home}",
                        hint=f"delete it with 'meshpipe env delete {ENV}', or run the demo with --home DIR")
    return home, engine


def _cleanup(engine: DemoEngine, walk: Walkthrough | None, console: Console) -> None:
    if walk is not None:
        walk.close()
        walk.title("Clean up")
        walk.command(f"meshpipe env delete {ENV} --yes")
    try:
        engine.env_delete(ENV)
    except NotFoundError:
        pass
    except MeshpipeError as exc:
        console.print(f"  [red]could not delete the environment: {escape(exc.message)}[/red]")
        return
    if walk is not None:
        shutil.rmtree(walk.workdir, ignore_errors=True)
        walk.say(f"environment {ENV} deleted: routes, versions, pipelines, repos, processes")


def run_demo(*, home: Path | None = None, keep: bool = False, console: Console | None = None, requests: int = 300,
             tasks_per_version: int | None = None, engine_factory: Callable[[Path], DemoEngine] | None = None,
             runtime: str = "process") -> DemoResult:
    """Run steps 1-9 of the walkthrough on the local engine in ``home``; clean up unless ``keep``.

    Raises :class:`DemoError` naming the failed step (after cleaning up, unless ``keep``).
    """
    if requests < 10:
        from meshpipe.errors import UserError

        raise UserError(f"--requests {requests} is too few to observe a 90/10 split", hint="use 10 or more")
    console = console or Console()
    home, engine = open_demo_engine(home, tasks_per_version, engine_factory)
    console.print(f"[bold]meshpipe demo[/bold]: the walkthrough on this machine (home {escape(str(home))})")
    walk = Walkthrough(engine, home, console, requests, runtime)
    try:
        result = walk.run()
    except BaseException:
        if keep:
            console.print(f"[yellow]The environment {ENV} is kept for inspection; delete it with "
                          f"'meshpipe env delete {ENV}'.[/yellow]")
            walk.close()
        else:
            _cleanup(engine, walk, console)
        raise
    result.kept = keep
    if keep:
        walk.close()
        walk.title("Done: the environment is still running")
        walk.say(f"curl {result.ingress_url}{HELLO_PATH}")
        walk.say(f"meshpipe env delete {ENV}    # when you are done")
    else:
        started = time.monotonic()
        _cleanup(engine, walk, console)
        result.step_seconds["cleanup"] = time.monotonic() - started
    total = sum(result.step_seconds.values())
    console.print()
    console.print(f"[bold]Walkthrough complete[/bold] in {total:.1f} s: canary {escape(result.canary.describe())}; "
                  f"after promotion {result.promoted.new}/{result.promoted.total} new.")
    console.print("  time per step: " + ", ".join(f"{key} {secs:.1f} s" for key, secs in result.step_seconds.items()),
                  style="dim", highlight=False)
    return result
