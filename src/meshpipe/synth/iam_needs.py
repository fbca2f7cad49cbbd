"""What the pipeline's own roles need, by what the pipeline template uses: a table per actor.

The CloudFormation registry schemas say what each *resource type's* handlers call (see
meshpipe.synth.iam_exclusions); these tables say what *CodePipeline* needs for each action provider it
runs, what *CodeBuild* needs for what a build reads and writes, and what CloudFormation calls for the
few resource types whose schema has no ``handlers`` (they predate the registry). The tests derive the
providers, modes, parameters and types from the rendered templates and check the roles and the
documented policies against these tables.
"""

from __future__ import annotations

# CodePipeline: the service role's needs per (category, provider) of an action.
# Sources: the "Service role permissions" section of each action's reference page,
#   https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-CodeCommit.html
#   https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-S3.html
#   https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-CodestarConnectionSource.html
#   https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-CodeBuild.html
#   https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-CloudFormation.html
PIPELINE_PROVIDER_ACTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("Source", "CodeCommit"): ("codecommit:CancelUploadArchive", "codecommit:GetBranch", "codecommit:GetCommit",
                               "codecommit:GetRepository", "codecommit:GetUploadArchiveStatus",
                               "codecommit:UploadArchive"),
    # The source object and its bucket (which must be versioned).
    ("Source", "S3"): ("s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetObject", "s3:GetObjectVersion"),
    # A GitHub, GitLab or Bitbucket repository through a connection. Connections created since July 2024
    # carry the codeconnections prefix in their ARN; older ones codestar-connections, whose action is
    # codestar-connections:UseConnection.
    ("Source", "CodeStarSourceConnection"): ("codeconnections:UseConnection",),
    ("Build", "CodeBuild"): ("codebuild:BatchGetBuilds", "codebuild:StartBuild"),
    # Every mode: the stack's description and events (CodePipeline reads the first failed resource from
    # DescribeStackEvents for its error message), template validation, and passing the action's RoleArn.
    ("Deploy", "CloudFormation"): ("cloudformation:DescribeStackEvents", "cloudformation:DescribeStacks",
                                   "cloudformation:ValidateTemplate", "iam:PassRole"),
}
# What each CloudFormation ActionMode does to the stack, on top of the provider's needs above.
CLOUDFORMATION_MODE_ACTIONS: dict[str, tuple[str, ...]] = {
    "CREATE_UPDATE": ("cloudformation:CreateStack", "cloudformation:UpdateStack"),
    # A stack left in a failed state is deleted and created again.
    "REPLACE_ON_FAILURE": ("cloudformation:CreateStack", "cloudformation:DeleteStack",
                           "cloudformation:UpdateStack"),
    "DELETE_ONLY": ("cloudformation:DeleteStack",),
}
# Every action reads its input artifacts from the artifact store and writes its outputs there.
# Source: https://docs.aws.amazon.com/codepipeline/latest/userguide/how-to-custom-role.html
ARTIFACT_STORE_ACTIONS: tuple[str, ...] = (
    "s3:GetBucketAcl", "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetObject", "s3:GetObjectVersion",
    "s3:PutObject",
)

# CodeBuild: the project's service role. Source:
#   https://docs.aws.amazon.com/codebuild/latest/userguide/setting-up-service-role.html
# The build writes its logs to an existing log group (created by the pipeline stack, so no
# logs:CreateLogGroup), reads its inputs from and writes its output to the pipeline's artifact bucket.
BUILD_LOG_ACTIONS: tuple[str, ...] = ("logs:CreateLogStream", "logs:PutLogEvents")
BUILD_ARTIFACT_ACTIONS: tuple[str, ...] = ("s3:GetBucketAcl", "s3:GetBucketLocation", "s3:GetObject",
                                           "s3:GetObjectVersion", "s3:PutObject")
# A buildspec's env.parameter-store entries, and PARAMETER_STORE project variables, are read with
# GetParameters; env.secrets-manager entries and SECRETS_MANAGER variables with GetSecretValue.
PARAMETER_STORE_ACTIONS: tuple[str, ...] = ("ssm:GetParameters",)
SECRETS_MANAGER_ACTIONS: tuple[str, ...] = ("secretsmanager:GetSecretValue",)

# Resource types whose registry schema has no handlers (CloudFormation's older, non-registry
# providers): the API calls their create, update, delete and tagging make, from each service's API
# reference. The tests check every action exists in IAM's catalogue.
UNREGISTERED_TYPE_ACTIONS: dict[str, tuple[str, ...]] = {
    "AWS::CodeBuild::Project": ("codebuild:BatchGetProjects", "codebuild:CreateProject", "codebuild:DeleteProject",
                                "codebuild:UpdateProject", "iam:PassRole"),
    **{f"AWS::AppMesh::{kind}": (f"appmesh:Create{kind}", f"appmesh:Delete{kind}", f"appmesh:Describe{kind}",
                                 f"appmesh:Update{kind}", "appmesh:TagResource", "appmesh:UntagResource")
       for kind in ("Mesh", "VirtualGateway", "VirtualNode", "VirtualRouter", "VirtualService")},
}

# Service-linked roles: creating the first resource of these types makes the service create its
# service-linked role in an account that lacks it, which needs iam:CreateServiceLinkedRole of the caller
# (for the service's name). Type -> (service name, role name). ECS's role comes with the environment's
# cluster, before any service stack. Sources: "Using service-linked roles" of
#   https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html
#   https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-service-linked-roles.html
#   https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html
# The load balancer's registry schema does not list the action, yet a fresh account's first load
# balancer needs it.
SERVICE_LINKED_ROLES: dict[str, tuple[str, str]] = {
    "AWS::ECS::Cluster": ("ecs.amazonaws.com", "AWSServiceRoleForECS"),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ("elasticloadbalancing.amazonaws.com",
                                                  "AWSServiceRoleForElasticLoadBalancing"),
    "AWS::ApplicationAutoScaling::ScalableTarget": ("ecs.application-autoscaling.amazonaws.com",
                                                    "AWSServiceRoleForApplicationAutoScaling_ECSService"),
}
