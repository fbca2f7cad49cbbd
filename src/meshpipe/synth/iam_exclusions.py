"""Handler permissions meshpipe's roles and documented policies leave out on purpose.

A resource type's registry schema lists every action its CloudFormation handlers may call, including
actions only some properties trigger. The tests derive the actions each deploying identity needs from
those schemas for every template meshpipe emits; an action listed here is one that only a property
meshpipe never sets would trigger, so granting it would only widen the identity. Each entry is
``(resource type, action) -> why it is never called``; the tests fail on an entry that no longer applies
(the type is no longer emitted, the action no longer required, or granted anyway).
"""

from __future__ import annotations

# A schema may list an operation name that is no IAM action; the tests check the catalogue lacks it.
NOT_AN_IAM_ACTION = "not an IAM action"
_S3_OPERATION = f"{NOT_AN_IAM_ACTION}: an S3 API name; the bucket never uses what it configures"
_S3_REMOVAL = (f"{NOT_AN_IAM_ACTION}: S3 authorizes removing this configuration with its Put action "
               "(s3:PutEncryptionConfiguration, s3:PutLifecycleConfiguration), which is granted")
_SCHEDULED = "no ScheduledActions: scaling is target tracking only"
_LAMBDA_TARGET = "the scalable target is an ECS service, never a Lambda function's provisioned concurrency"
_ROLES_ONLY = "the policy is attached to Roles only, never to a user or a group"
_NO_COGNITO = "no authenticate-cognito action on any listener or rule"
_ECS_REGISTERS = "no Targets property: ECS registers and deregisters the service's tasks itself"
_NO_SERVICE_ATTRIBUTES = "no ServiceAttributes on the Cloud Map service"
_NO_VPN = "attaches an internet gateway, never a VPN gateway"
_NO_SECONDARY_NAT = "no secondary or private addresses on a NAT gateway"
_NO_IPV6 = "no IPv6 CIDR block on a subnet"
_NO_IPAM = "no IPAM pools on the load balancer"
_NO_LCU_RESERVATION = "no MinimumLoadBalancerCapacity on the load balancer"
_NO_CLUSTER_EXTRAS = "no capacity providers, account settings or KMS keys on the cluster"
_NO_LOG_DELIVERY = "no log delivery to Firehose or S3 from a log group"
_NO_LOG_GROUP_EXTRAS = "no KMS key, data protection, field index, resource policy or bearer token on a log group"
_NO_LOG_DELETION_PROTECTION = "no DeletionProtectionEnabled: the environment's teardown deletes its log groups"
_NO_ROLE_EXTRAS = "no ManagedPolicyArns on any role"
_BOUNDARY_KEPT = "every role keeps its permissions boundary: it is never removed"
_BOUNDARY_UNATTACHED = ("the permissions boundary is attached to no role, user or group (Roles, Users, Groups "
                        "unset): roles name it as their boundary")
_NO_BUCKET_EXTRAS = "the buckets set encryption, ownership, public access block, versioning and lifecycle only"
_NO_S3_TABLES = "no MetadataTableConfiguration or MetadataConfiguration on a bucket"
_NO_REPO_CODE = "no Code: a config repo starts empty (meshpipe pushes nothing into it)"
_NO_REPO_KEY = "no KmsKeyId on a config repo: AWS-owned key"
_NO_VPC_EXTRAS = "no VpcEncryptionControl and no InstanceTenancy on the VPC"
_NO_ADDRESS_TRANSFER = "no TransferAddress on an Elastic IP"

EXCLUDED_HANDLER_ACTIONS: dict[tuple[str, str], str] = {
    # ---- version and service stacks (the pipeline's DeployRole) ----
    ("AWS::ApplicationAutoScaling::ScalableTarget", "application-autoscaling:PutScheduledAction"): _SCHEDULED,
    ("AWS::ApplicationAutoScaling::ScalableTarget", "application-autoscaling:DeleteScheduledAction"): _SCHEDULED,
    ("AWS::ApplicationAutoScaling::ScalableTarget", "lambda:PutProvisionedConcurrencyConfig"): _LAMBDA_TARGET,
    ("AWS::ApplicationAutoScaling::ScalableTarget", "lambda:GetProvisionedConcurrencyConfig"): _LAMBDA_TARGET,
    ("AWS::ApplicationAutoScaling::ScalableTarget", "lambda:DeleteProvisionedConcurrencyConfig"): _LAMBDA_TARGET,
    ("AWS::IAM::Policy", "iam:PutUserPolicy"): _ROLES_ONLY,
    ("AWS::IAM::Policy", "iam:GetUserPolicy"): _ROLES_ONLY,
    ("AWS::IAM::Policy", "iam:DeleteUserPolicy"): _ROLES_ONLY,
    ("AWS::IAM::Policy", "iam:PutGroupPolicy"): _ROLES_ONLY,
    ("AWS::IAM::Policy", "iam:GetGroupPolicy"): _ROLES_ONLY,
    ("AWS::IAM::Policy", "iam:DeleteGroupPolicy"): _ROLES_ONLY,
    ("AWS::ServiceDiscovery::Service", "servicediscovery:UpdateServiceAttributes"): _NO_SERVICE_ATTRIBUTES,
    ("AWS::ServiceDiscovery::Service", "servicediscovery:DeleteServiceAttributes"): _NO_SERVICE_ATTRIBUTES,
    ("AWS::ElasticLoadBalancingV2::ListenerRule", "cognito-idp:DescribeUserPoolClient"): _NO_COGNITO,
    ("AWS::ElasticLoadBalancingV2::TargetGroup", "elasticloadbalancing:RegisterTargets"): _ECS_REGISTERS,
    ("AWS::ElasticLoadBalancingV2::TargetGroup", "elasticloadbalancing:DeregisterTargets"): _ECS_REGISTERS,
    # ---- environment, build-bucket and pipeline stacks (the operator's deployer policy) ----
    ("AWS::EC2::EIP", "ec2:AcceptAddressTransfer"): _NO_ADDRESS_TRANSFER,
    ("AWS::EC2::VPCGatewayAttachment", "ec2:AttachVpnGateway"): _NO_VPN,
    ("AWS::EC2::VPCGatewayAttachment", "ec2:DetachVpnGateway"): _NO_VPN,
    ("AWS::EC2::NatGateway", "ec2:AssignPrivateNatGatewayAddress"): _NO_SECONDARY_NAT,
    ("AWS::EC2::NatGateway", "ec2:UnassignPrivateNatGatewayAddress"): _NO_SECONDARY_NAT,
    ("AWS::EC2::NatGateway", "ec2:AssociateNatGatewayAddress"): _NO_SECONDARY_NAT,
    ("AWS::EC2::NatGateway", "ec2:DisassociateNatGatewayAddress"): _NO_SECONDARY_NAT,
    ("AWS::EC2::Subnet", "ec2:AssociateSubnetCidrBlock"): _NO_IPV6,
    ("AWS::EC2::Subnet", "ec2:DisassociateSubnetCidrBlock"): _NO_IPV6,
    ("AWS::EC2::VPC", "ec2:CreateVpcEncryptionControl"): _NO_VPC_EXTRAS,
    ("AWS::EC2::VPC", "ec2:ModifyVpcTenancy"): _NO_VPC_EXTRAS,
    ("AWS::ElasticLoadBalancingV2::LoadBalancer", "ec2:DescribeIpamPools"): _NO_IPAM,
    ("AWS::ElasticLoadBalancingV2::LoadBalancer", "elasticloadbalancing:ModifyIpPools"): _NO_IPAM,
    ("AWS::ElasticLoadBalancingV2::LoadBalancer", "elasticloadbalancing:ModifyCapacityReservation"):
        _NO_LCU_RESERVATION,
    ("AWS::ElasticLoadBalancingV2::Listener", "cognito-idp:DescribeUserPoolClient"): _NO_COGNITO,
    ("AWS::ECS::Cluster", "kms:DescribeKey"): _NO_CLUSTER_EXTRAS,
    ("AWS::ECS::Cluster", "ecs:PutAccountSetting"): _NO_CLUSTER_EXTRAS,
    ("AWS::ECS::Cluster", "ecs:PutAccountSettingDefault"): _NO_CLUSTER_EXTRAS,
    ("AWS::ECS::Cluster", "ecs:PutClusterCapacityProviders"): _NO_CLUSTER_EXTRAS,
    ("AWS::Logs::LogGroup", "firehose:TagDeliveryStream"): _NO_LOG_DELIVERY,
    ("AWS::Logs::LogGroup", "logs:CreateLogDelivery"): _NO_LOG_DELIVERY,
    ("AWS::Logs::LogGroup", "s3:REST.PUT.OBJECT"): f"{NOT_AN_IAM_ACTION} (S3's REST operation name); "
                                                   "it belongs to log delivery to S3, which is unused",
    ("AWS::Logs::LogGroup", "logs:AssociateKmsKey"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:DisassociateKmsKey"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:PutDataProtectionPolicy"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:PutIndexPolicy"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:DeleteIndexPolicy"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:PutResourcePolicy"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:DeleteResourcePolicy"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:PutBearerTokenAuthentication"): _NO_LOG_GROUP_EXTRAS,
    ("AWS::Logs::LogGroup", "logs:PutLogGroupDeletionProtection"): _NO_LOG_DELETION_PROTECTION,
    ("AWS::IAM::Role", "iam:AttachRolePolicy"): _NO_ROLE_EXTRAS,
    ("AWS::IAM::Role", "iam:DetachRolePolicy"): _NO_ROLE_EXTRAS,
    ("AWS::IAM::Role", "iam:DeleteRolePermissionsBoundary"): _BOUNDARY_KEPT,
    **{("AWS::IAM::ManagedPolicy", f"iam:{verb}{kind}Policy"): _BOUNDARY_UNATTACHED
       for verb in ("Attach", "Detach") for kind in ("Role", "User", "Group")},
    ("AWS::CodeCommit::Repository", "codecommit:CreateCommit"): _NO_REPO_CODE,
    ("AWS::CodeCommit::Repository", "s3:GetObject"): _NO_REPO_CODE,
    ("AWS::CodeCommit::Repository", "s3:GetObjectVersion"): _NO_REPO_CODE,
    ("AWS::CodeCommit::Repository", "codecommit:UpdateRepositoryEncryptionKey"): _NO_REPO_KEY,
    # Bucket operations the schema lists by their API name; IAM authorizes them with another action
    # (the matching Put action, or s3:PutReplicationConfiguration) that the bucket's handlers also list.
    ("AWS::S3::Bucket", "s3:DeleteBucketEncryption"): _S3_REMOVAL,
    ("AWS::S3::Bucket", "s3:DeleteBucketLifecycle"): _S3_REMOVAL,
    **{("AWS::S3::Bucket", f"s3:{action}"): _S3_OPERATION for action in (
        "DeleteBucketAnalyticsConfiguration", "DeleteBucketCors",
        "DeleteBucketMetricsConfiguration", "DeleteBucketReplication", "PutBucketReplication",
        "PutObjectLockConfiguration", "UpdateBucketMetadataAnnotationTableConfiguration")},
    **{("AWS::S3::Bucket", f"s3:{action}"): _NO_BUCKET_EXTRAS for action in (
        "PutAccelerateConfiguration", "PutAnalyticsConfiguration", "PutBucketAbac", "PutBucketAcl", "PutObjectAcl",
        "PutBucketCORS", "PutBucketLogging", "PutBucketNotification", "PutBucketObjectLockConfiguration",
        "PutReplicationConfiguration", "PutBucketWebsite", "DeleteBucketWebsite", "PutIntelligentTieringConfiguration",
        "PutInventoryConfiguration", "PutMetricsConfiguration")},
    **{("AWS::S3::Bucket", action): _NO_S3_TABLES for action in (
        "s3:CreateBucketMetadataTableConfiguration", "s3:DeleteBucketMetadataTableConfiguration",
        "s3:UpdateBucketMetadataInventoryTableConfiguration",
        "s3:UpdateBucketMetadataJournalTableConfiguration", "s3tables:CreateNamespace", "s3tables:CreateTable",
        "s3tables:CreateTableBucket", "s3tables:GetTable", "s3tables:GetTableMetadataLocation",
        "s3tables:PutTableBucketPolicy", "s3tables:PutTableEncryption", "s3tables:PutTablePolicy",
        "s3tables:UpdateTableMetadataLocation")},
}
