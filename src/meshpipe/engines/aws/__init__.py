"""The AWS engine: the walkthrough's operations against CloudFormation, S3, App Mesh and CodePipeline.

``clients`` is the only module that imports boto3 or botocore; ``calls`` retries throttled calls and turns
failures into meshpipe errors (``errors``); ``stacks`` deploys, deletes and waits for stacks; ``mesh_api``
sets routes and gateway routes; ``buckets`` uploads and empties; ``pipeline_history`` reads pipeline runs;
``teardown`` deletes an environment in the order that works; ``engine`` puts them together as
:class:`~meshpipe.engines.aws.engine.AwsEngine`.
"""
