"""The AWS engine: the walkthrough's operations against CloudFormation, S3, ECS, App Mesh and CodePipeline.

``clients`` is the only module that imports boto3 or botocore; ``calls`` retries throttled calls and turns
failures into meshpipe errors (``errors``); ``stacks`` deploys, deletes and waits for stacks; ``buckets``
uploads and empties; ``pipeline_history`` reads pipeline runs; ``teardown`` holds the steps of deleting an
environment that every flavour shares. What differs between the mesh flavours is one ops class each
(``mesh_ops``): ``service_connect`` (ECS Service Connect, through ``ecs_api``, ``ingress_api`` and
``cloudmap_api``) and ``app_mesh`` (App Mesh, shut down by AWS, through ``mesh_api``). ``engine`` checks the
input, picks the environment's ops class and puts the rest together as
:class:`~meshpipe.engines.aws.engine.AwsEngine`.
"""
