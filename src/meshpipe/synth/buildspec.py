"""The CodeBuild buildspec of a service pipeline's Build stage.

The Build stage gets two input artifacts: the bundle from the build bucket (primary, the working
directory) and the config repo (secondary, at ``$CODEBUILD_SRC_DIR_<name>``). It installs meshpipe from
the bundle's wheels with pip (nothing else: no Node, no CDK), runs ``meshpipe synth`` on the repo's
manifest for the commit that triggered the run, and hands the template and two variables on:

* ``STACK_NAME``: ``<env>-<svc>-<version>``, exactly what ``meshpipe synth`` printed;
* ``VERSION_ID``: the 8-character version id, which the Deploy stage puts in the stack name.

The platform settings reach ``meshpipe synth`` as the CodeBuild project's environment variables, and the
environment's platform policy as ``MESHPIPE_POLICY``, a ``PARAMETER_STORE`` variable CodeBuild fills from
the environment's SSM parameter (see meshpipe.synth.policy_parameter); ``meshpipe synth`` reads both.

In the Service Connect flavour (``mesh="service-connect"``) the build runs ``meshpipe synth --mesh
service-connect``, whose stack is the service's one stack ``<env>-<svc>``; ``VERSION_ID`` is then the
first 8 characters of the commit, for the run's record.
"""

from __future__ import annotations

import yaml

from meshpipe.mesh.flavour import MeshFlavour
from meshpipe.model import VERSION_LEN

# CodeBuild's Ubuntu standard:7.0 image has this Python; the bundle's wheels are downloaded for it.
BUILD_IMAGE = "aws/codebuild/standard:7.0"
BUILD_PYTHON = "3.11"

# Artifact names matter: CodeBuild exposes a secondary input as $CODEBUILD_SRC_DIR_<artifact name>.
BUNDLE_ARTIFACT = "BundleOutput"
CONFIG_ARTIFACT = "ConfigOutput"
BUILD_ARTIFACT = "BuildOutput"

MANIFEST_FILE = "manifest.yaml"
SYNTH_DIR = "out"
# The Build stage's artifact holds the version's template under this fixed name for the Deploy stage.
TEMPLATE_FILE = "service.template.json"
EXPORTED_VARIABLES = ("STACK_NAME", "VERSION_ID")

# Bundle layout (see meshpipe.pipeline.bundle): pip options and pins, and the wheels they point to.
REQUIREMENTS_FILE = "requirements.txt"
WHEELS_DIR = "wheels"


def install_command() -> str:
    """Install meshpipe from the bundle.

    The requirements file pins meshpipe's dependencies; a bundle that carries their wheels also starts it
    with ``--no-index --find-links wheels``, so the build then needs no package index at all. meshpipe
    itself is always installed from its wheel file, never looked up by name.
    """
    return (f"python -m pip install --disable-pip-version-check --no-cache-dir "
            f"--requirement {REQUIREMENTS_FILE} {WHEELS_DIR}/meshpipe-*.whl")


def build_commands() -> list[str]:
    manifest = f'"$CODEBUILD_SRC_DIR_{CONFIG_ARTIFACT}/{MANIFEST_FILE}"'
    prefix = '"$ENVIRONMENT_NAME-$SERVICE_NAME-"'
    return [
        # meshpipe synth reads the platform settings from the environment and prints the stack name; the
        # flavour is named, since the command's default is Service Connect.
        f'STACK_NAME="$(meshpipe synth {manifest} --commit "$CONFIG_COMMIT_ID" -o {SYNTH_DIR} --mesh {MeshFlavour.APPMESH})"',
        f'VERSION_ID="${{STACK_NAME#{prefix}}}"',
        # The Deploy stage builds the stack name from VERSION_ID; refuse anything but a version stack.
        f'if ! [[ "$VERSION_ID" =~ ^[0-9a-f]{{{VERSION_LEN}}}$ '
        f'&& "$STACK_NAME" == "$ENVIRONMENT_NAME-$SERVICE_NAME-$VERSION_ID" ]]; then '
        f'echo "meshpipe synth printed $STACK_NAME, not a version stack of $SERVICE_NAME" >&2; exit 1; fi',
        f'cp "{SYNTH_DIR}/$STACK_NAME.template.json" {TEMPLATE_FILE}',
        'echo "version $VERSION_ID of $SERVICE_NAME: stack $STACK_NAME"',
    ]


def service_connect_build_commands() -> list[str]:
    manifest = f'"$CODEBUILD_SRC_DIR_{CONFIG_ARTIFACT}/{MANIFEST_FILE}"'
    return [
        f'STACK_NAME="$(meshpipe synth {manifest} --commit "$CONFIG_COMMIT_ID" --mesh {MeshFlavour.SERVICE_CONNECT} '
        f'-o {SYNTH_DIR})"',
        'VERSION_ID="$(printf %s "$CONFIG_COMMIT_ID" | cut -c1-' + str(VERSION_LEN) + ' | tr A-F a-f)"',
        # The Deploy stage updates <env>-<svc>; refuse a template for any other stack.
        f'if ! [[ "$VERSION_ID" =~ ^[0-9a-f]{{{VERSION_LEN}}}$ '
        f'&& "$STACK_NAME" == "$ENVIRONMENT_NAME-$SERVICE_NAME" ]]; then '
        f'echo "meshpipe synth printed $STACK_NAME, not the service stack of $SERVICE_NAME" >&2; exit 1; fi',
        f'cp "{SYNTH_DIR}/$STACK_NAME.template.json" {TEMPLATE_FILE}',
        'echo "version $VERSION_ID of $SERVICE_NAME: stack $STACK_NAME"',
    ]


def render_buildspec(python_version: str = BUILD_PYTHON, mesh: MeshFlavour = MeshFlavour.APPMESH) -> str:
    """The buildspec as YAML text, for the ``appmesh`` or ``service-connect`` flavour. Pure."""
    spec = {
        "version": 0.2,
        "env": {
            # [[ ]] and ${var#prefix} in the build commands need bash, not sh.
            "shell": "bash",
            "exported-variables": list(EXPORTED_VARIABLES),
        },
        "phases": {
            "install": {
                "runtime-versions": {"python": python_version},
                "commands": [install_command()],
            },
            "build": {"commands": service_connect_build_commands() if mesh is MeshFlavour.SERVICE_CONNECT
                      else build_commands()},
        },
        "artifacts": {"files": [TEMPLATE_FILE]},
    }
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=False, width=10_000)
