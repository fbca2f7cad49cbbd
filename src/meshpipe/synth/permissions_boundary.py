"""The permissions boundary every role of meshpipe's stacks carries, so that whoever may create those roles
(the deployer policy requires the boundary on each) cannot hand a role more than meshpipe's roles use.

The boundary is a managed policy of the environment stack, ``meshpipe-<env>-boundary``: it allows the
actions meshpipe's roles are granted (the tests check every statement of every role against it), IAM's
role actions only on the environment's own roles and service-linked roles. A role's own policies still
say what it may do; the boundary only caps it. Pure.
"""

from __future__ import annotations

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.synth import suppressions as skip
from meshpipe.synth.cfn import Json, checkov_skips, ref, resource, sub

BOUNDARY = "PermissionsBoundary"
# What the roles of the environment, pipeline, version and service stacks are granted, IAM's role
# actions aside (both flavours).
ROLE_ACTIONS: tuple[str, ...] = (
    "application-autoscaling:DeleteScalingPolicy", "application-autoscaling:DeregisterScalableTarget",
    "application-autoscaling:DescribeScalableTargets", "application-autoscaling:DescribeScalingPolicies",
    "application-autoscaling:DescribeScheduledActions", "application-autoscaling:ListTagsForResource",
    "application-autoscaling:PutScalingPolicy", "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:TagResource", "application-autoscaling:UntagResource",
    "appmesh:CreateVirtualNode", "appmesh:DeleteVirtualNode", "appmesh:DescribeVirtualNode",
    "appmesh:StreamAggregatedResources", "appmesh:TagResource", "appmesh:UntagResource", "appmesh:UpdateVirtualNode",
    "cloudformation:CreateStack", "cloudformation:DeleteStack", "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStacks", "cloudformation:UpdateStack", "cloudformation:ValidateTemplate",
    "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms", "cloudwatch:GetMetricData",
    "cloudwatch:ListTagsForResource", "cloudwatch:PutMetricAlarm", "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "codebuild:BatchGetBuilds", "codebuild:StartBuild",
    "codecommit:CancelUploadArchive", "codecommit:GetBranch", "codecommit:GetCommit", "codecommit:GetRepository",
    "codecommit:GetUploadArchiveStatus", "codecommit:UploadArchive",
    "codeconnections:UseConnection", "codestar-connections:UseConnection",
    "codepipeline:StartPipelineExecution",
    "ec2:DescribeVpcs",
    "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetAuthorizationToken", "ecr:GetDownloadUrlForLayer",
    "ecs:CreateService", "ecs:DeleteService", "ecs:DeregisterTaskDefinition", "ecs:DescribeServiceDeployments",
    "ecs:DescribeServices", "ecs:DescribeTaskDefinition", "ecs:ListServiceDeployments", "ecs:ListTagsForResource",
    "ecs:RegisterTaskDefinition", "ecs:StopServiceDeployment", "ecs:TagResource", "ecs:UntagResource",
    "ecs:UpdateService",
    "elasticloadbalancing:AddTags", "elasticloadbalancing:CreateRule", "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:DeleteRule", "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyRule", "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:RemoveTags", "elasticloadbalancing:SetRulePriorities",
    "logs:CreateLogStream", "logs:PutLogEvents",
    "s3:GetBucketAcl", "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetObject", "s3:GetObjectVersion",
    "s3:PutObject", "s3:PutObjectAcl",
    "servicediscovery:CreateService", "servicediscovery:DeleteService", "servicediscovery:GetNamespace",
    "servicediscovery:GetOperation", "servicediscovery:GetService", "servicediscovery:GetServiceAttributes",
    "servicediscovery:ListServices", "servicediscovery:ListTagsForResource", "servicediscovery:TagResource",
    "servicediscovery:UntagResource", "servicediscovery:UpdateService",
    "ssm:GetParameters",
)
# IAM's role actions meshpipe's roles use: on the environment's roles and service-linked roles only.
IAM_ROLE_ACTIONS: tuple[str, ...] = ("iam:CreateServiceLinkedRole", "iam:DeleteRolePolicy", "iam:GetRole",
                                     "iam:GetRolePolicy", "iam:PassRole", "iam:PutRolePolicy")


def boundary_name() -> Json:
    return sub("meshpipe-${EnvironmentName}-boundary")


def boundary_arn() -> Json:
    """The boundary's ARN, for a stack with the ``EnvironmentName`` parameter (the pipeline stacks)."""
    return sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/meshpipe-${EnvironmentName}-boundary")


def boundary_resource(mesh: MeshFlavour) -> Json:
    """The environment stack's managed policy that caps every role of the environment (a Service Connect
    environment's roles never call App Mesh)."""
    actions = [a for a in ROLE_ACTIONS if mesh == MeshFlavour.APPMESH or not a.startswith("appmesh:")]
    return resource("AWS::IAM::ManagedPolicy", {
        "Description": sub("Permissions boundary of every role meshpipe creates in ${EnvironmentName}"),
        "ManagedPolicyName": boundary_name(),
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {"Sid": "MeshpipeRoleActions", "Effect": "Allow", "Action": actions, "Resource": "*"},
            {"Sid": "EnvironmentRoles", "Effect": "Allow", "Action": list(IAM_ROLE_ACTIONS), "Resource": [
                sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${EnvironmentName}-*"),
                sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/*")]},
        ]},
    }, Metadata=checkov_skips(skip.BOUNDARY_WRITE, skip.BOUNDARY_PERMISSIONS_MANAGEMENT,
                              skip.BOUNDARY_DATA_EXFILTRATION))


def bounded(resources: Json, boundary: Json) -> Json:
    """``resources`` with ``boundary`` as the permissions boundary of every role."""
    for res in resources.values():
        if res["Type"] == "AWS::IAM::Role":
            res["Properties"]["PermissionsBoundary"] = boundary
    return resources


def environment_boundary() -> Json:
    """The environment stack's own roles name the boundary by reference (created before them)."""
    return ref(BOUNDARY)
