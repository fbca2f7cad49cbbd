"""Routes and gateway routes as data, held to App Mesh's limits before any engine sees them."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpipe.errors import UserError
from meshpipe.mesh.routing import (
    WeightedTarget,
    make_gateway_route,
    make_route,
    node_name,
    parse_version_ref,
    parse_weight_args,
    pick_target,
    total_weight,
    validate_targets,
    version_of_node,
)

SVC = "hello-backend"
OLD, NEW = "e9d5f17a", "0badc0de"


def versions(n: int) -> list[str]:
    return [f"{i:08x}" for i in range(n)]


# --- weighted targets -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 10])
def test_one_to_ten_targets(n: int) -> None:
    targets = [WeightedTarget(v, 10) for v in versions(n)]
    assert len(make_route(SVC, targets).targets) == n


@pytest.mark.parametrize("n", [0, 11])
def test_fewer_than_one_or_more_than_ten_targets_are_refused(n: int) -> None:
    with pytest.raises(UserError, match=f"1-10 weighted targets, got {n}"):
        validate_targets([WeightedTarget(v, 10) for v in versions(n)])


@pytest.mark.parametrize("weight", [0, 1, 50, 100])
def test_weights_from_0_to_100(weight: int) -> None:
    route = make_route(SVC, [WeightedTarget(OLD, weight), WeightedTarget(NEW, 1)])
    assert route.weight_of(OLD) == weight


@pytest.mark.parametrize("weight", [-1, 101, 10.0, True, "50", None])
def test_weights_must_be_integers_0_to_100(weight: object) -> None:
    with pytest.raises(UserError, match="is not an integer 0-100"):
        validate_targets([WeightedTarget(OLD, weight)])  # type: ignore[arg-type]


def test_at_least_one_weight_above_zero() -> None:
    with pytest.raises(UserError, match="at least one target needs a weight above 0"):
        validate_targets([WeightedTarget(OLD, 0), WeightedTarget(NEW, 0)])


def test_a_version_is_listed_once() -> None:
    with pytest.raises(UserError, match="listed twice"):
        validate_targets([WeightedTarget(OLD, 50), WeightedTarget(OLD, 50)])


@pytest.mark.parametrize("version", ["E9D5F17A", "e9d5f17", "e9d5f17a3", "vn-x", "", "e9d5f17a\n"])
def test_targets_name_8_character_version_ids(version: str) -> None:
    with pytest.raises(UserError, match="is not a version id"):
        validate_targets([WeightedTarget(version, 100)])


@pytest.mark.parametrize("priority", [0, 1, 1000])
def test_priority_0_to_1000(priority: int) -> None:
    assert make_route(SVC, [WeightedTarget(OLD, 100)], priority=priority).priority == priority


@pytest.mark.parametrize("priority", [-1, 1001, True, 1.0])
def test_priority_outside_0_to_1000_is_refused(priority: object) -> None:
    with pytest.raises(UserError, match=r"priority .* is not an integer 0-1000"):
        make_route(SVC, [WeightedTarget(OLD, 100)], priority=priority)  # type: ignore[arg-type]


def test_a_route_needs_a_service_name() -> None:
    with pytest.raises(UserError, match="is not a service name"):
        make_route("Hello Backend", [WeightedTarget(OLD, 100)])


def test_the_route_spec_is_the_seeds_canary_json() -> None:
    route = make_route(SVC, [WeightedTarget(OLD, 90), WeightedTarget(NEW, 10)])
    assert (route.name, route.router) == ("r-hello-backend", "vr-hello-backend")
    assert route.to_appmesh_spec() == {
        "httpRoute": {
            "action": {"weightedTargets": [{"virtualNode": "vn-hello-backend-e9d5f17a", "weight": 90},
                                           {"virtualNode": "vn-hello-backend-0badc0de", "weight": 10}]},
            "match": {"prefix": "/"},
        },
        "priority": 1,
    }


# --- version references -----------------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "version"), [
    (OLD, OLD),
    ("E9D5F17A", OLD),
    ("e9d5f17a3c4b5d6e7f8091a2b3c4d5e6f7a8b9c0", OLD),
    ("e9d5f17a3c", OLD),
    (f"vn-{SVC}-{OLD}", OLD),
    (f"  vn-{SVC}-{OLD}  ", OLD),
])
def test_versions_by_id_commit_or_virtual_node(ref: str, version: str) -> None:
    assert parse_version_ref(SVC, ref) == version


@pytest.mark.parametrize(("ref", "says"), [
    (f"vn-hello-web-{OLD}", "is not a virtual node of 'hello-backend'"),
    (f"vn-{SVC}-xyz", "is not a virtual node"),
    ("e9d5f17", "is not a version"),
    ("latest", "is not a version"),
    ("", "is not a version"),
    ("e9d5f17a" * 6, "is not a version"),
])
def test_bad_version_references(ref: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_version_ref(SVC, ref)


def test_node_names_round_trip() -> None:
    assert version_of_node(SVC, node_name(SVC, OLD)) == OLD
    assert version_of_node(SVC, node_name("hello-web", OLD)) is None
    assert version_of_node("hello", node_name(SVC, OLD)) is None


def test_weight_arguments() -> None:
    targets = parse_weight_args(SVC, [f"{OLD}=90", f"vn-{SVC}-{NEW}=10"])
    assert targets == (WeightedTarget(OLD, 90), WeightedTarget(NEW, 10))


@pytest.mark.parametrize(("args", "says"), [
    ([OLD], "is not VERSION=WEIGHT"),
    ([f"{OLD}=ninety"], "is not an integer 0-100"),
    ([f"{OLD}=9.5"], "is not an integer 0-100"),
    ([f"{OLD}=-5"], "is not an integer 0-100"),
    ([f"{OLD}=101"], "is not an integer 0-100"),
    ([f"{OLD}=1e2"], "is not an integer 0-100"),
    ([f"{OLD}=50", f"vn-{SVC}-{OLD}=50"], "listed twice"),
    ([f"{OLD}=0"], "at least one target"),
    ([], "1-10 weighted targets, got 0"),
])
def test_bad_weight_arguments(args: list[str], says: str) -> None:
    with pytest.raises(UserError, match=says):
        parse_weight_args(SVC, args)


# --- gateway routes ---------------------------------------------------------------------------------

def test_the_seeds_gateway_route() -> None:
    route = make_gateway_route("r-ingress-hello-service", "/hello-service", "hello-web", "demo.local")
    assert route.virtual_service == "hello-web.demo.local"
    assert route.to_appmesh_spec() == {"httpRoute": {
        "action": {"target": {"virtualService": {"virtualServiceName": "hello-web.demo.local"}}},
        "match": {"prefix": "/hello-service"}}}


def test_prefix_rewrite_can_be_disabled() -> None:
    route = make_gateway_route("r", "/", "hello-web", "demo.local", rewrite_prefix=False)
    assert route.to_appmesh_spec()["httpRoute"]["action"]["rewrite"] == {  # type: ignore[index]
        "prefix": {"defaultPrefix": "DISABLED"}}


@pytest.mark.parametrize("prefix", ["/", "/hello-service", "/a/b/", "/v1.2/x_y~z", "/a%20b", "/" + "a" * 254])
def test_valid_prefixes(prefix: str) -> None:
    assert make_gateway_route("r", prefix, "hello-web", "demo.local").prefix == prefix


@pytest.mark.parametrize(("prefix", "says"), [
    ("hello", "must start with '/'"),
    ("", "must start with '/'"),
    ("/a b", "is not a path prefix"),
    ("/a?x=1", "is not a path prefix"),
    ("/a#f", "is not a path prefix"),
    ("/%zz", "is not a path prefix"),
    ("/caf\u00e9", "is not a path prefix"),
    ("/a\n", "is not a path prefix"),
    ("/" + "a" * 255, "at most 255"),
])
def test_invalid_prefixes(prefix: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        make_gateway_route("r", prefix, "hello-web", "demo.local")


@pytest.mark.parametrize(("name", "service", "namespace", "says"), [
    ("-r", "hello-web", "demo.local", "is not a gateway route name"),
    ("r r", "hello-web", "demo.local", "is not a gateway route name"),
    ("r", "Hello", "demo.local", "is not a service name"),
    ("r", "hello-web", "Demo Local", "is not a namespace name"),
])
def test_gateway_route_names(name: str, service: str, namespace: str, says: str) -> None:
    with pytest.raises(UserError, match=says):
        make_gateway_route(name, "/x", service, namespace)


# --- picking a target -------------------------------------------------------------------------------

WEIGHTED = st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=10).filter(any).map(
    lambda weights: tuple(WeightedTarget(f"{i:08x}", w) for i, w in enumerate(weights)))


@given(WEIGHTED)
@settings(max_examples=200, deadline=None)
def test_every_roll_picks_each_version_as_often_as_its_weight(targets: tuple[WeightedTarget, ...]) -> None:
    picks = Counter(pick_target(targets, roll) for roll in range(total_weight(targets)))
    assert picks == Counter({t.version: t.weight for t in targets if t.weight})


@given(WEIGHTED, st.data())
@settings(max_examples=200, deadline=None)
def test_rolls_outside_the_total_weight_are_refused(targets: tuple[WeightedTarget, ...], data: st.DataObject) -> None:
    roll = data.draw(st.integers(min_value=total_weight(targets), max_value=10_000) | st.integers(max_value=-1))
    with pytest.raises(ValueError, match="roll outside the total weight"):
        pick_target(targets, roll)


def test_a_zero_weight_version_is_never_picked() -> None:
    targets = (WeightedTarget(OLD, 0), WeightedTarget(NEW, 100))
    assert {pick_target(targets, roll) for roll in range(100)} == {NEW}


def test_the_canary_split_picks_the_new_version_one_time_in_ten() -> None:
    targets = (WeightedTarget(OLD, 90), WeightedTarget(NEW, 10))
    picks = Counter(pick_target(targets, roll) for roll in range(100))
    assert picks == {OLD: 90, NEW: 10}
