"""checkov findings the platform templates accept, each with the reason a reader of the template sees.

Each is a ``(check id, reason)`` pair that a resource's ``Metadata`` carries through
:func:`meshpipe.synth.cfn.checkov_skips`. The ingress's own (plain HTTP without a certificate, port 80 open)
live with the ingress, in :mod:`meshpipe.synth.ingress_tls` and :mod:`meshpipe.synth.network_security`.
"""

from __future__ import annotations

LOG_GROUP_KMS = (
    "CKV_AWS_158",
    "CloudWatch Logs encrypts every log group at rest with a key it manages. A customer-managed KMS key "
    "would add a key, its key policy and a monthly charge per environment without limiting who reads the "
    "logs, which IAM already decides.",
)

CONTAINER_INSIGHTS = (
    "CKV_AWS_65",
    "Container Insights bills its metrics and performance logs per task. ECS already publishes the service "
    "CPU and memory metrics that scaling and alarms use, at no charge; a platform that wants the per-task "
    "detail sets the cluster's containerInsights setting.",
)

LOAD_BALANCER_ACCESS_LOGS = (
    "CKV_AWS_91",
    "Access logs need an S3 bucket whose policy admits the regional Elastic Load Balancing log delivery; "
    "the demo environment keeps none. The proxies behind it (the gateway Envoy on App Mesh, each service's "
    "Service Connect proxy) write an access log of every request to the environment's log group.",
)

BUCKET_ACCESS_LOGS = (
    "CKV_AWS_18",
    "Only the account's own build and pipeline roles use this private, TLS-only bucket. Server access logs "
    "would need a second bucket (itself flagged the same way); CloudTrail data events are the account-wide "
    "record of object access.",
)

ARTIFACT_BUCKET_VERSIONING = (
    "CKV_AWS_21",
    "CodePipeline writes each run's artifacts under new keys and never overwrites them, so versions would "
    "only keep copies of deleted artifacts; the bundle's bucket, which a pipeline's source reads, is "
    "versioned.",
)

# The roles' permissions boundary (meshpipe.synth.permissions_boundary): checkov reads it as a policy that
# grants, but a boundary grants nothing; it caps each role at the actions meshpipe's roles use, and each
# role's own policy scopes those to its resources.
_BOUNDARY = ("A permissions boundary grants nothing by itself: it caps every role of the environment at the "
             "actions meshpipe's roles use, and each role's own policy scopes them to its resources.")
BOUNDARY_WRITE = ("CKV_AWS_111", _BOUNDARY)
BOUNDARY_PERMISSIONS_MANAGEMENT = ("CKV_AWS_109", _BOUNDARY)
BOUNDARY_DATA_EXFILTRATION = ("CKV_AWS_108", _BOUNDARY)
