"""The environment's load balancer, for Service Connect gateway routes: what a listener rule forwards now.

ECS moves a service's production listener rule's weights between its two target groups during each
deployment and leaves them where the deployment ended. The service stack declares the weights as
parameters; before a stack update that changes the rule, the engine reads the live weights here so the
update declares exactly what ECS last set (see meshpipe.synth.service_connect.ingress_rule).
"""

from __future__ import annotations

from meshpipe.engines.aws.calls import AwsCalls
from meshpipe.engines.aws.errors import error_code, is_not_found

RULE_GONE_CODES = frozenset({"RuleNotFoundException", "ListenerNotFoundException"})


class IngressApi:
    def __init__(self, calls: AwsCalls) -> None:
        self.calls = calls

    def forward_weights(self, rule_arn: str) -> dict[str, int] | None:
        """Target group ARN -> weight of the rule's forward action now; None when the rule (or a forward
        action) is not there. A forward to a single target group sends it everything."""
        page = self.calls.call_or_none("elbv2", "describe_rules", when=_rule_gone, RuleArns=[rule_arn])
        rules = (page or {}).get("Rules", [])
        if not rules:
            return None
        forward = next((a for a in rules[0].get("Actions", []) if a.get("Type") == "forward"), None)
        if forward is None:
            return None
        groups = (forward.get("ForwardConfig") or {}).get("TargetGroups") or []
        if groups:
            return {str(g["TargetGroupArn"]): int(g.get("Weight", 1)) for g in groups}
        single = forward.get("TargetGroupArn")
        return {str(single): 1} if single else None


def _rule_gone(exc: BaseException) -> bool:
    return error_code(exc) in RULE_GONE_CODES or is_not_found(exc)
