"""One name per mesh flavour, and on AWS one ops class per flavour, chosen from the environment's stack."""

from __future__ import annotations

import inspect
import json

import pytest

from meshpipe.engines.aws.app_mesh import AppMeshOps
from meshpipe.engines.aws.engine import AwsEngine
from meshpipe.engines.aws.env_context import EnvContext
from meshpipe.engines.aws.mesh_ops import MeshOps
from meshpipe.engines.aws.service_connect import ServiceConnectOps
from meshpipe.engines.aws.stacks import StackState
from meshpipe.errors import UserError
from meshpipe.mesh.flavour import MeshFlavour


def test_the_flavours_keep_the_spellings_of_the_cli_json_and_stack_outputs() -> None:
    assert [str(f) for f in MeshFlavour] == ["appmesh", "service-connect"]
    assert json.dumps({"mesh": MeshFlavour.SERVICE_CONNECT}) == '{"mesh": "service-connect"}'
    assert MeshFlavour.parse("appmesh") is MeshFlavour.APPMESH


@pytest.mark.parametrize("text", ["istio", "", "APPMESH", "service_connect"])
def test_an_unknown_flavour_is_a_user_error_naming_both(text: str) -> None:
    with pytest.raises(UserError) as err:
        MeshFlavour.parse(text)
    assert repr(text) in err.value.message and err.value.hint == "choose one of: appmesh, service-connect"


def _stack(outputs: dict[str, str]) -> StackState:
    return StackState(name="demo-env", stack_id="arn:stack/demo-env", status="CREATE_COMPLETE", outputs=outputs)


def test_each_flavour_has_one_ops_class_chosen_from_the_environments_stack() -> None:
    engine = AwsEngine(clients=object())  # type: ignore[arg-type]  # no call is made
    assert set(engine.flavours) == set(MeshFlavour)
    sc = engine.ops_for(EnvContext.of("demo", _stack({"MeshFlavour": "service-connect"})))
    am = engine.ops_for(EnvContext.of("demo", _stack({})))  # the App Mesh template records no flavour
    assert isinstance(sc, ServiceConnectOps) and isinstance(am, AppMeshOps)


@pytest.mark.parametrize("ops", [AppMeshOps, ServiceConnectOps])
def test_each_ops_class_implements_every_operation_of_the_protocol(ops: type) -> None:
    wanted = {name for name, _ in inspect.getmembers(MeshOps, inspect.isfunction) if not name.startswith("_")}
    wanted |= set(MeshOps.__annotations__)
    missing = sorted(name for name in wanted if not hasattr(ops, name))
    assert not missing
