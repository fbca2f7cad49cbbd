import pytest

from meshpipe.errors import UserError
from meshpipe.mesh import traffic
from meshpipe.mesh.routing import WeightedTarget, make_route

OLD, NEW, OTHER = "e9d5f17a", "0badc0de", "12345678"


def route(*pairs: tuple[str, int]):
    return make_route("hello-backend", [WeightedTarget(v, w) for v, w in pairs])


def weights(targets):
    return {t.version: t.weight for t in targets}


def test_canary_splits_from_the_stable_version():
    assert weights(traffic.canary(route((OLD, 100)), NEW)) == {OLD: 90, NEW: 10}
    assert weights(traffic.canary(route((OLD, 100)), NEW, 25)) == {OLD: 75, NEW: 25}


def test_canary_refuses_bad_weights_and_no_route():
    with pytest.raises(UserError):
        traffic.canary(route((OLD, 100)), NEW, 0)
    with pytest.raises(UserError):
        traffic.canary(route((OLD, 100)), NEW, 100)
    with pytest.raises(UserError, match="no route"):
        traffic.canary(None, NEW)
    with pytest.raises(UserError, match="already"):
        traffic.canary(route((OLD, 100)), OLD)


def test_promote_defaults_to_the_canary_and_rollback_to_the_stable():
    split = route((OLD, 90), (NEW, 10))
    assert weights(traffic.promote(split)) == {NEW: 100}
    assert weights(traffic.rollback(split)) == {OLD: 100}
    assert weights(traffic.promote(split, OLD)) == {OLD: 100}
    assert weights(traffic.rollback(split, to=NEW)) == {NEW: 100}


def test_ambiguous_routes_need_a_named_version():
    with pytest.raises(UserError, match="no single stable"):
        traffic.rollback(route((OLD, 50), (NEW, 50)))
    with pytest.raises(UserError, match="several candidates"):
        traffic.promote(route((OLD, 80), (NEW, 10), (OTHER, 10)))
    with pytest.raises(UserError, match="no single canary"):
        traffic.promote(route((OLD, 100)))


def test_stepped_rollout_rises_to_full_weight():
    steps = traffic.stepped(OLD, NEW, [10, 50, 100])
    assert [weights(s.targets) for s in steps] == [{OLD: 90, NEW: 10}, {OLD: 50, NEW: 50}, {NEW: 100}]
    for bad in ([], [50, 10, 100], [10, 50], [0, 100], [10, 10, 100]):
        with pytest.raises(UserError):
            traffic.stepped(OLD, NEW, bad)


def test_gate_judges_the_error_rate():
    assert traffic.gate(traffic.Health(100, 0), 0.01)[0]
    assert not traffic.gate(traffic.Health(100, 5), 0.01)[0]
    ok, why = traffic.gate(traffic.Health(0, 0), 0.01)
    assert ok and "nothing to judge" in why
    ok, why = traffic.gate(traffic.Health(3, 0), 0.01, min_requests=10)
    assert not ok and "at least 10" in why
