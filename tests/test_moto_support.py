"""The one list of resource types moto's CloudFormation cannot create (support.moto_support) is moto's."""

from __future__ import annotations

from moto.cloudformation.parsing import get_model_map

from support import iam
from support.moto_support import MOTO_LACKS


def lacking() -> dict[str, set[str]]:
    supported = get_model_map()
    found: dict[str, set[str]] = {}
    for emitted in iam.emitted_templates():
        for res in emitted.template["Resources"].values():
            if res["Type"] not in supported:
                found.setdefault(res["Type"], set()).add(emitted.name)
    return found


def test_the_list_is_what_moto_lacks_among_the_emitted_types() -> None:
    assert set(lacking()) == set(MOTO_LACKS)


def test_no_emitted_template_can_be_deployed_whole_on_moto() -> None:
    """Why the engine's tests deploy stand-ins: every template holds a type moto lacks."""
    supported = get_model_map()
    for emitted in iam.emitted_templates():
        assert {r["Type"] for r in emitted.template["Resources"].values()} - set(supported), emitted.name
