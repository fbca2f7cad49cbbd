"""``meshpipe demo``: the walkthrough end to end on the local engine, and its small parts."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from meshpipe.demos.walkthrough import (
    NEW_PAGE_START,
    OLD_PAGE_START,
    DemoError,
    IngressClient,
    Split,
    bundled_manifest,
    classify,
    run_demo,
)
from meshpipe.engines.base import EnvironmentInfo, PipelineInfo
from meshpipe.errors import NotFoundError, OperationError, UserError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_bundled_manifests_are_the_examples_byte_for_byte() -> None:
    for config in ("hello-web-cfg", "hello-backend-cfg", "hello-backend-cfg-v2"):
        assert bundled_manifest(config) == (EXAMPLES / config / "manifest.yaml").read_bytes()


def test_classify_and_split() -> None:
    assert classify(200, OLD_PAGE_START + "1619709367722") == "old"
    assert classify(200, NEW_PAGE_START + "1619709367722") == "new"
    assert classify(502, OLD_PAGE_START) == "error"
    assert classify(200, "something else") == "error"
    split = Split(old=272, new=28)
    assert split.describe() == "272 old (90.7 %), 28 new (9.3 %)"
    assert Split(old=1, new=1, errors=2).describe() == "1 old (25.0 %), 1 new (25.0 %), 2 failed"


def test_ingress_client_refuses_anything_but_loopback() -> None:
    with pytest.raises(DemoError, match="not a local"):
        IngressClient("http://example.com:8080")
    with pytest.raises(DemoError):
        IngressClient("https://127.0.0.1:8443")
    assert IngressClient("http://127.0.0.1:8080").port == 8080


def test_too_few_requests_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="too few"):
        run_demo(home=tmp_path, requests=5)
    assert not (tmp_path / "envs").exists()


class _EngineFailingAtStep2:
    """Just enough of an engine for steps 1-2: step 2 fails, and cleanup must still happen."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def env_status(self, env: str) -> EnvironmentInfo:
        raise NotFoundError(f"environment {env!r} does not exist")

    def env_create(self, env: str) -> EnvironmentInfo:
        return EnvironmentInfo(env, "RUNNING", "http://127.0.0.1:9")

    def pipeline_create(self, env: str, service: str) -> PipelineInfo:
        raise OperationError("the config repo could not be created: disk full")

    def env_delete(self, env: str) -> None:
        self.deleted.append(env)


def test_a_failing_step_is_named_and_the_environment_is_cleaned_up(tmp_path: Path) -> None:
    engine = _EngineFailingAtStep2()
    buffer = io.StringIO()
    with pytest.raises(DemoError) as info:
        run_demo(home=tmp_path, console=Console(file=buffer, width=120), requests=20,
                 engine_factory=lambda home: engine)  # type: ignore[arg-type,return-value]
    assert info.value.message.startswith("Step 2: Create the virtual services")
    assert "the config repo could not be created: disk full" in info.value.message
    assert info.value.hint is not None
    assert "meshpipe pipeline logs hello-web --env demo" in info.value.hint
    assert str(tmp_path / "envs" / "demo" / "daemon.log") in info.value.hint
    assert engine.deleted == ["demo"]
    assert "meshpipe env delete demo" in buffer.getvalue()


def test_keep_leaves_a_failed_environment_for_inspection(tmp_path: Path) -> None:
    engine = _EngineFailingAtStep2()
    with pytest.raises(DemoError):
        run_demo(home=tmp_path, keep=True, console=Console(file=io.StringIO()), requests=20,
                 engine_factory=lambda home: engine)  # type: ignore[arg-type,return-value]
    assert engine.deleted == []


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Processes whose command line or environment mentions ``text`` (this test's home)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]))
    return found


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_demo_runs_the_walkthrough_and_leaves_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    pytest.importorskip("meshpipe.engines.local.engine", reason="the local engine (LocalEngine) is not built yet")
    home = tmp_path / "mp"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MESHPIPE_HOME", str(home))
    (tmp_path / "home").mkdir()
    buffer = io.StringIO()
    console = Console(file=buffer, width=160, color_system=None)
    try:
        result = run_demo(home=home, requests=200, tasks_per_version=1, console=console)
    finally:
        printed = buffer.getvalue()
        print(printed)

    # Step 5: the original sample's page through the ingress.
    assert re.fullmatch(r"Hello Bob<br>Welcome to our world!<br><br>timestamp: \d{13}", result.first_page)
    assert "curl http://127.0.0.1:" in printed and "/hello-service/hello/Bob" in printed
    # Two backend versions named after their commits.
    assert re.fullmatch(r"[0-9a-f]{8}", result.backend_old) and re.fullmatch(r"[0-9a-f]{8}", result.backend_new)
    assert result.backend_old != result.backend_new
    # Step 7: 90/10 over 200 requests; 20 expected for the new version, binomial sd ~4.2.
    assert result.canary.total == 200 and result.canary.errors == 0
    assert 5 <= result.canary.new <= 40, result.canary
    # Step 8: everything on the new version.
    assert result.promoted.total > 0 and result.promoted.new == result.promoted.total
    # The safety check: the old version could not be deleted while it carried weight.
    assert result.refused_delete
    assert "meshpipe route set hello-backend" in printed and "meshpipe env delete demo" in printed
    # Every command shown can be run as it is: no placeholder for where meshpipe is installed.
    assert "$INSTALL_DIR" not in printed
    copied = [line.split()[2] for line in printed.splitlines() if line.startswith("$ cp ")]
    assert copied and all(Path(path).is_file() for path in copied), copied
    assert set(result.step_seconds) >= {"1", "2", "3", "4", "5", "6", "7", "8", "9", "cleanup"}

    deadline = time.monotonic() + 15
    left = _processes_mentioning(str(home))
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _processes_mentioning(str(home))
    assert left == [], f"processes left running: {left}"
    assert not (home / "envs" / "demo").exists() or not any((home / "envs" / "demo").iterdir())


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_rollout_demo_rolls_the_bad_version_back_and_promotes_the_good_one(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from meshpipe.demos.rollout import run_rollout_demo

    home = tmp_path / "mp"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MESHPIPE_HOME", str(home))
    (tmp_path / "home").mkdir()
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    try:
        result = run_rollout_demo(home=home, console=console, tasks_per_version=1, interval=2)
    finally:
        printed = buffer.getvalue()
        print(printed)
    assert result.bad_outcome["status"] == "rolled-back" and "success rate" in result.bad_outcome["reason"]
    assert result.good_outcome["status"] == "promoted"
    # One passed window per step; a step may also hold through inconclusive windows (too few requests on a
    # busy machine), which never decide anything.
    judged = [w for w in result.good_outcome["windows"] if w["verdict"] != "inconclusive"]
    assert [(w["weight"], w["verdict"]) for w in judged] == [(20, "passed"), (50, "passed")]
    assert "rolled back by itself: success rate" in printed
    # The bad version answered while it ran (its 500s were mostly retried by the mesh), then no more.
    assert f"{result.bad} 200" in result.served["bad"] and f"{result.good} 200" in result.served["good"]
    assert not any(key.startswith(result.bad) for key in result.served["good"])
    assert "meshpipe rollout status hello-backend" in printed and "meshpipe env delete demo" in printed
    deadline = time.monotonic() + 15
    left = _processes_mentioning(str(home))
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _processes_mentioning(str(home))
    assert left == [], f"processes left running: {left}"
