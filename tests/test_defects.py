"""meshpipe's own faults go through the CLI's bug boundary (exit 70, traceback kept in a file), not out as a
failed operation (exit 1): the AWS engine's broken promises and a bug inside the local daemon alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import typer

from meshpipe.cli import BUG_EXIT, main
from meshpipe.engines.aws import engine as engine_module
from meshpipe.engines.aws.stacks import MAX_TEMPLATE_BODY
from meshpipe.engines.local.control import operations as ops
from meshpipe.engines.local.control.httpapi import ControlClient, make_control_app
from meshpipe.errors import ConflictError, Defect
from support.aws import StubFactory, make_engine
from support.clock import FakeClock

TOKEN = "t" * 32


class Target:
    """A daemon whose status is broken in the way asked for."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    async def status(self, request: Any) -> dict[str, Any]:
        raise self.failure


@pytest.fixture
def serve() -> Iterator[Any]:
    from aiohttp import web

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    def start(target: Target) -> ControlClient:
        async def up() -> int:
            runner = web.AppRunner(make_control_app(target, TOKEN))  # type: ignore[arg-type]
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            return int(runner.addresses[0][1])

        return ControlClient(asyncio.run_coroutine_threadsafe(up(), loop).result(10), TOKEN, timeout=10)

    yield start
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_bug_in_the_daemon_reaches_the_client_as_a_defect(serve: Any) -> None:
    client = serve(Target(KeyError("generation")))
    with pytest.raises(Defect, match="daemon hit a bug: KeyError: 'generation'"):
        client.call(ops.STATUS, ops.Nothing())


def test_a_refusal_by_the_daemon_stays_what_it_was(serve: Any) -> None:  # the negative control
    client = serve(Target(ConflictError("a rollout of hello is already running")))
    with pytest.raises(ConflictError, match="already running"):
        client.call(ops.STATUS, ops.Nothing())


def test_a_defect_leaves_the_cli_through_the_bug_boundary(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    app = typer.Typer()

    @app.command()
    def templates() -> None:
        raise Defect("the platform templates lack demo-env.template.json")

    @app.command()
    def other() -> None:
        pass

    assert main(["templates"], app=app) == BUG_EXIT


def test_an_oversized_template_with_nowhere_to_stage_it_is_a_defect() -> None:
    engine = make_engine(StubFactory(), FakeClock())
    with pytest.raises(Defect, match="more than CloudFormation takes inline"):
        engine.stacks._template_source("demo-env", b"x" * (MAX_TEMPLATE_BODY + 1), None)
    assert engine.stacks._template_source("demo-env", b"{}", None) == {"TemplateBody": "{}"}


def test_platform_templates_without_the_one_asked_for_are_a_defect() -> None:
    with pytest.raises(Defect, match="the platform templates lack demo-env"):
        engine_module._template({"demo-build-bucket.template.json": {}}, "demo-env.template.json")


def test_a_capability_meshpipe_did_not_grant_is_a_defect_and_a_denial_is_not() -> None:
    from botocore.exceptions import ClientError

    from meshpipe.engines.aws.errors import translate
    from meshpipe.errors import OperationError

    def refused(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "Requires capabilities : [CAPABILITY_IAM]"}},
                           "CreateStack")

    with pytest.raises(Defect, match="capability meshpipe did not grant"):
        translate(refused("InsufficientCapabilitiesException"), "cloudformation", "CreateStack")
    assert isinstance(translate(refused("AccessDenied"), "cloudformation", "CreateStack"), OperationError)
