"""What each engine declares it can do beyond the common protocol, and how the CLI refuses the rest."""

from __future__ import annotations

import pytest

from meshpipe.cli import main
from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.engines.base import (
    ConfigurableEnvironments,
    ConfigurablePipelines,
    DashboardSource,
    DeployedTemplates,
    Engine,
    EventSource,
    HeaderRoutes,
    LogSource,
    MetricsSource,
    PipelineStarter,
    PipelineWaiter,
    Planner,
    RolloutRunner,
    Rollouts,
    RolloutStatusSource,
    StatsSource,
    TopologySource,
)
from meshpipe.engines.local.engine import LocalEngine

LOCAL_ONLY = (PipelineWaiter, PipelineStarter, StatsSource, EventSource, RolloutRunner, LogSource, MetricsSource)
AWS_ONLY = (ConfigurableEnvironments, ConfigurablePipelines, Planner, DeployedTemplates)
BOTH = (Rollouts, RolloutStatusSource, HeaderRoutes, TopologySource, DashboardSource)


def engines(tmp_path) -> dict[str, Engine]:
    # Neither constructor calls anything: the AWS engine's clients are made on its first call.
    return {"local": LocalEngine(home=tmp_path), "aws": AwsEngine(region="us-east-1")}


def test_each_engine_declares_its_own_capabilities(tmp_path) -> None:
    found = engines(tmp_path)
    every = LOCAL_ONLY + AWS_ONLY + BOTH
    assert [isinstance(found["local"], c) for c in every] == [True] * 7 + [False] * 4 + [True] * 5
    assert [isinstance(found["aws"], c) for c in every] == [False] * 7 + [True] * 4 + [True] * 5


@pytest.mark.parametrize("argv", [
    ["pipeline", "wait", "hello-web", "--engine", "aws"],
    ["pipeline", "start", "hello-web", "--engine", "aws"],
    ["events", "--engine", "aws"],
    ["rollout", "start", "hello-web", "0123abcd", "--engine", "aws"],
    ["rollout", "pause", "hello-web", "--engine", "aws"],
    ["logs", "hello-web", "--engine", "aws"],
    ["metrics", "--engine", "aws"],
])
def test_a_command_whose_capability_an_engine_lacks_is_refused_before_any_call(argv, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a call would fail with another message
    assert main(argv) == 2
    assert "not available on the aws engine" in capsys.readouterr().err


def test_force_delete_of_a_pipeline_is_refused_where_the_engine_has_none(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path))
    assert main(["pipeline", "delete", "hello-web", "--force"]) == 2
    assert "--force is not available on the local engine" in capsys.readouterr().err
