"""The IAM evaluator of tests/support/iam_eval.py decides as IAM's documented evaluation logic does.

Each case is a documented rule of the IAM user guide (policy evaluation logic, the Condition element's
operators, multivalued context keys, the Resource element's ARN matching), stated with this project's own
example policies and requests.
"""

from __future__ import annotations

from typing import Any

import pytest

from support.iam_eval import (
    ALLOWED,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Request,
    UnsupportedPolicy,
    allows,
    arn_matches,
    decide,
    tag_context,
)

ROLE = "arn:aws:iam::111122223333:role/demo.hello-web.task"


def allow(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_nothing_allowed_is_an_implicit_deny_and_an_explicit_deny_wins() -> None:
    request = Request("s3:GetObject", "arn:aws:s3:::bucket/key")
    assert decide([], request) == IMPLICIT_DENY
    assert decide([allow("s3:GetObject")], request) == ALLOWED
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::bucket/*"}
    assert decide([allow("s3:GetObject"), deny], request) == EXPLICIT_DENY
    # A deny on another resource leaves the request allowed.
    assert decide([allow("s3:GetObject"), {**deny, "Resource": "arn:aws:s3:::other/*"}], request) == ALLOWED


@pytest.mark.parametrize(("pattern", "arn", "matches"), [
    ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b", True),
    ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket", False),
    ("arn:aws:iam::*:role/demo-*", "arn:aws:iam::111122223333:role/demo-x", True),
    ("arn:aws:iam::*:role/demo-????", "arn:aws:iam::111122223333:role/demo-abcde", False),
    # The resource part may hold colons; a wildcard there covers them.
    ("arn:aws:logs:*:*:log-group:demo:*", "arn:aws:logs:us-east-1:1:log-group:demo:log-stream:a", True),
    # The other parts are matched one by one: a wildcard in the region does not reach into the account.
    ("arn:aws:ecs:*:service/demo/x", "arn:aws:ecs:us-east-1:1:service/demo/x", False),
    # Case-sensitive, unlike actions.
    ("arn:aws:s3:::Bucket", "arn:aws:s3:::bucket", False),
    ("*", "anything at all", True),
])
def test_resource_arns_match_part_by_part(pattern: str, arn: str, matches: bool) -> None:
    assert arn_matches(pattern, arn) is matches


def test_not_action_and_not_resource() -> None:
    statement = {"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"}
    assert allows([statement], Request("s3:GetObject", "arn:aws:s3:::public/a"))
    assert not allows([statement], Request("s3:GetObject", "arn:aws:s3:::secret/a"))
    assert not allows([statement], Request("iam:CreateRole", ROLE))


def test_positive_operators_fail_on_a_missing_key_and_negated_ones_hold() -> None:
    # "If the key that you specify in a policy condition is not present in the request context, the
    # values do not match and the condition is false ... StringNotLike or ArnNotLike ... is true."
    equals = allow(Condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}})
    assert not allows([equals], Request("iam:PassRole", ROLE))
    assert allows([equals], Request("iam:PassRole", ROLE, {"iam:PassedToService": "ecs-tasks.amazonaws.com"}))
    assert not allows([equals], Request("iam:PassRole", ROLE, {"iam:PassedToService": "cloudformation.amazonaws.com"}))
    not_like = allow(Condition={"StringNotLike": {"iam:PassedToService": "cloudformation.*"}})
    assert allows([not_like], Request("iam:PassRole", ROLE))
    assert not allows([not_like], Request("iam:PassRole", ROLE, {"iam:PassedToService": "cloudformation.amazonaws.com"}))
    if_exists = allow(Condition={"StringEqualsIfExists": {"aws:RequestTag/env": "demo"}})
    assert allows([if_exists], Request("ec2:CreateVpc", "*"))
    assert not allows([if_exists], Request("ec2:CreateVpc", "*", {"aws:RequestTag/env": "prod"}))


def test_condition_keys_are_case_insensitive_values_case_sensitive() -> None:
    statement = allow(Condition={"StringEquals": {"aws:ResourceTag/Env": "demo"}})
    assert allows([statement], Request("ec2:DeleteVpc", "*", {"aws:resourcetag/env": "demo"}))
    assert not allows([statement], Request("ec2:DeleteVpc", "*", {"aws:ResourceTag/Env": "Demo"}))
    ignore_case = allow(Condition={"StringEqualsIgnoreCase": {"aws:ResourceTag/Env": "demo"}})
    assert allows([ignore_case], Request("ec2:DeleteVpc", "*", {"aws:ResourceTag/Env": "Demo"}))


def test_operators_keys_and_values_combine_as_documented() -> None:
    # Operators AND, keys AND, values of one key OR.
    statement = allow(Condition={
        "StringEquals": {"aws:ResourceTag/env": ["demo", "test"], "aws:ResourceTag/team": "web"},
        "StringLike": {"aws:ResourceTag/owner": "a*"}})
    ok = {"aws:ResourceTag/env": "test", "aws:ResourceTag/team": "web", "aws:ResourceTag/owner": "ann"}
    assert allows([statement], Request("x:Y", "*", ok))
    assert not allows([statement], Request("x:Y", "*", {**ok, "aws:ResourceTag/team": "db"}))
    assert not allows([statement], Request("x:Y", "*", {**ok, "aws:ResourceTag/owner": "bob"}))
    # A negated operator with several values is a NOR.
    nor = allow(Condition={"StringNotEquals": {"aws:ResourceTag/env": ["prod", "stage"]}})
    assert allows([nor], Request("x:Y", "*", {"aws:ResourceTag/env": "demo"}))
    assert not allows([nor], Request("x:Y", "*", {"aws:ResourceTag/env": "stage"}))


def test_multivalued_keys_with_set_operators() -> None:
    # ForAllValues: every value in the request is among the policy's; true for a missing key.
    all_values = allow(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}})
    assert allows([all_values], Request("x:Y", "*", {"aws:TagKeys": ["environment"]}))
    assert not allows([all_values], Request("x:Y", "*", {"aws:TagKeys": ["environment", "dept"]}))
    assert allows([all_values], Request("x:Y", "*"))
    # ForAnyValue: at least one value matches; false for a missing key.
    any_value = allow(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}})
    assert allows([any_value], Request("x:Y", "*", {"aws:TagKeys": ["environment", "dept"]}))
    assert not allows([any_value], Request("x:Y", "*", {"aws:TagKeys": ["dept"]}))
    assert not allows([any_value], Request("x:Y", "*"))
    # A plain operator on a key with several values is refused: the policy must say which set operator.
    with pytest.raises(UnsupportedPolicy):
        allows([allow(Condition={"StringEquals": {"aws:TagKeys": "environment"}})],
               Request("x:Y", "*", {"aws:TagKeys": ["a", "b"]}))


def test_null_and_bool() -> None:
    absent = allow(Condition={"Null": {"aws:RequestTag/env": "true"}})
    present = allow(Condition={"Null": {"aws:RequestTag/env": "false"}})
    assert allows([absent], Request("x:Y", "*")) and not allows([present], Request("x:Y", "*"))
    assert allows([present], Request("x:Y", "*", {"aws:RequestTag/env": "demo"}))
    secure = {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
              "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    assert decide([allow(), secure], Request("s3:GetObject", "*", {"aws:SecureTransport": "false"})) == EXPLICIT_DENY
    assert decide([allow(), secure], Request("s3:GetObject", "*", {"aws:SecureTransport": "true"})) == ALLOWED


def test_arn_operators() -> None:
    like = allow(Condition={"ArnLike": {"iam:PermissionsBoundary": "arn:aws:iam::*:policy/demo-boundary"}})
    assert allows([like], Request("iam:CreateRole", ROLE,
                                  {"iam:PermissionsBoundary": "arn:aws:iam::111122223333:policy/demo-boundary"}))
    assert not allows([like], Request("iam:CreateRole", ROLE,
                                      {"iam:PermissionsBoundary": "arn:aws:iam::111122223333:policy/admin"}))
    assert not allows([like], Request("iam:CreateRole", ROLE))
    equals = allow(Condition={"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:1:topic"}})
    assert allows([equals], Request("x:Y", "*", {"aws:SourceArn": "arn:aws:sns:us-east-1:1:topic"}))


def test_tag_context() -> None:
    context = tag_context({"meshpipe:environment": "demo"}, {"owner": "web"})
    assert context == {"aws:RequestTag/meshpipe:environment": "demo", "aws:TagKeys": ["meshpipe:environment"],
                       "aws:ResourceTag/owner": "web"}


def test_what_it_cannot_read_raises() -> None:
    with pytest.raises(UnsupportedPolicy):
        allows([allow(Condition={"NumericLessThan": {"s3:max-keys": "10"}})], Request("s3:ListBucket", "*"))
    with pytest.raises(UnsupportedPolicy):
        allows([allow(resource="arn:aws:s3:::${aws:username}/*")], Request("s3:GetObject", "arn:aws:s3:::a/b"))
