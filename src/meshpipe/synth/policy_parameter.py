"""The platform policy in the environment stack: where every pipeline build of the environment reads it.

The environment template takes the policy's compact JSON as its ``PlatformPolicy`` parameter (defaulting
to the policy it was rendered with) and keeps it in an SSM parameter ``/meshpipe/<env>/platform-policy``
of the standard tier, whose name it exports as ``<env>:PlatformPolicyParameter``. Each service pipeline's
CodeBuild project declares ``MESHPIPE_POLICY`` as a ``PARAMETER_STORE`` variable of that name, so CodeBuild
puts the policy's text in the build's environment and ``meshpipe synth`` applies it; the build role may
read that one parameter and no other.

A parameter rather than the text in each pipeline: a policy change is one ``env create --platform`` and
reaches the next build of every service, with no pipeline to redeploy.
"""

from __future__ import annotations

from meshpipe.platform import PlatformPolicy
from meshpipe.platform_policy import POLICY_ENV_VAR, POLICY_MAX_BYTES, policy_text
from meshpipe.synth.cfn import Json, import_value, output, ref, resource, sub

__all__ = ["POLICY_ENV_VAR", "POLICY_EXPORT", "POLICY_PARAMETER", "POLICY_RESOURCE", "build_policy_variable",
           "parameter_name", "policy_output", "policy_parameter_arn", "policy_resources",
           "policy_template_parameter"]

POLICY_PARAMETER = "PlatformPolicy"  # the environment template's parameter holding the text
POLICY_RESOURCE = "PlatformPolicyParameter"  # its AWS::SSM::Parameter
POLICY_EXPORT = "PlatformPolicyParameter"  # export <env>:PlatformPolicyParameter, the parameter's name
_NAME = "/meshpipe/${EnvironmentName}/platform-policy"


def parameter_name(env: str) -> str:
    return _NAME.replace("${EnvironmentName}", env)


def policy_template_parameter(policy: PlatformPolicy | None) -> Json:
    return {
        "Type": "String",
        "Default": policy_text(policy),
        "MaxLength": POLICY_MAX_BYTES,
        "AllowedPattern": r"^\{.*\}$",
        "Description": "The platform policy as compact JSON (what differs from the defaults); every pipeline "
                       "build of the environment applies it. Set by meshpipe env create --platform FILE.",
    }


def policy_resources() -> Json:
    return {
        POLICY_RESOURCE: resource("AWS::SSM::Parameter", {
            "Description": sub("meshpipe platform policy of ${EnvironmentName}, read by every pipeline build"),
            "Name": sub(_NAME),
            "Tier": "Standard",
            "Type": "String",
            "Value": ref(POLICY_PARAMETER),
        }),
    }


def policy_output() -> Json:
    """The parameter's name (``Ref`` of an SSM parameter), exported for the pipelines."""
    return output(ref(POLICY_RESOURCE), "SSM parameter holding the platform policy",
                  sub("${EnvironmentName}:" + POLICY_EXPORT))


def _imported_name() -> Json:
    return import_value(sub("${EnvironmentName}:" + POLICY_EXPORT))


def build_policy_variable() -> Json:
    """The CodeBuild project's variable: CodeBuild resolves the parameter's value into MESHPIPE_POLICY."""
    return {"Name": POLICY_ENV_VAR, "Type": "PARAMETER_STORE", "Value": _imported_name()}


def policy_parameter_arn() -> Json:
    """ARN of the environment's policy parameter (its name starts with '/', so it follows 'parameter')."""
    return sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${Name}",
               {"Name": _imported_name()})
