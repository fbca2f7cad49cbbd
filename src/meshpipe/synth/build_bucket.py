"""The build-bucket template: where the platform team puts the bundle every service pipeline builds with.

One stack per environment (``<env>-build-bucket``), created before any pipeline. Pipelines read one object
from it, :data:`BUNDLE_KEY`, whose versions the bucket keeps so a pipeline's S3 source sees each upload.
"""

from __future__ import annotations

from typing import Any

from meshpipe.synth import suppressions as skip
from meshpipe.synth.cfn import Json, checkov_skips, get_att, output, ref, resource, sub, template
from meshpipe.synth.environment import check_env_name, environment_name_parameter, iam_policy

BUNDLE_KEY = "meshpipe-bundle.zip"
# Old bundles stay retrievable for a while (a pipeline run reads the version current when it started).
NONCURRENT_BUNDLE_DAYS = 90


def build_bucket_stack_name(env: str) -> str:
    return f"{env}-build-bucket"


def build_bucket_template_file(env: str) -> str:
    return f"{env}-build-bucket.template.json"


def private_bucket_properties(extra: Json | None = None) -> Json:
    """A bucket nobody reaches from outside the account: encrypted, public access blocked, owner-enforced."""
    props: Json = {
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}},
        ]},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        },
    }
    props.update(extra or {})
    return props


def tls_only_bucket_policy(bucket_logical_id: str) -> Json:
    """A bucket policy refusing every request not made over TLS.

    This is the one statement with a wildcard action, and it is a Deny: it must cover every S3 action.
    """
    bucket_arn: Any = get_att(bucket_logical_id, "Arn")
    return resource("AWS::S3::BucketPolicy", {
        "Bucket": ref(bucket_logical_id),
        "PolicyDocument": iam_policy([
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:*"],
                "Resource": [bucket_arn, sub("${" + bucket_logical_id + ".Arn}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ]),
    })


def render_build_bucket(env: str) -> Json:
    """The build bucket stack's template for ``env``. Pure."""
    check_env_name(env)
    resources: Json = {
        "BuildBucket": resource("AWS::S3::Bucket", private_bucket_properties({
            "LifecycleConfiguration": {"Rules": [{
                "Id": "expire-old-bundles",
                "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_BUNDLE_DAYS},
                "Status": "Enabled",
            }]},
            # The pipelines' S3 source action requires a versioned bucket.
            "VersioningConfiguration": {"Status": "Enabled"},
        }), Metadata=checkov_skips(skip.BUCKET_ACCESS_LOGS)),
        "BuildBucketPolicy": tls_only_bucket_policy("BuildBucket"),
    }
    return template(
        resources,
        description=f"meshpipe build bucket: holds {BUNDLE_KEY}, which every service pipeline installs meshpipe from.",
        parameters={"EnvironmentName": environment_name_parameter(env)},
        outputs={
            "BuildBucketName": output(ref("BuildBucket"), f"Bucket to upload {BUNDLE_KEY} to",
                                      sub("${EnvironmentName}:BuildBucketName")),
        },
    )
