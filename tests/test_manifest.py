"""Manifest validation: the original sample's manifests pass verbatim; every rule a user can break is reported with
file, line, field path and what is allowed, all problems of a file at once."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpipe.errors import ValidationError
from meshpipe.manifest import ServiceManifest, load_manifest, load_manifest_text, manifest_schema
from meshpipe.validation.rules import health_path_problem
from support.seed_manifests import SEED_BACKEND_STEP_6, SEED_WEB
from support.synth_cases import version_from_text

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

MINIMAL = """\
Task:
  Family: web
AppContainer:
  Image: web:1
  HealthCheckPath: /ping
"""

LINE_RE = re.compile(r"^manifest\.yaml(:\d+)?: (\S+: )?.+$")


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(ValidationError) as err:
        load_manifest_text(text, "manifest.yaml")
    lines = [str(p) for p in err.value.problems]
    for line in lines:
        assert LINE_RE.match(line), line
    return lines


def only_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def manifest(task: str = "Family: web", app: str = "Image: web:1\n  HealthCheckPath: /ping", extra: str = "") -> str:
    return f"Task:\n  {task}\nAppContainer:\n  {app}\n{extra}"


# --- the original sample's manifests ---------------------------------------------------------------------------

def test_seed_web_manifest_is_accepted_verbatim() -> None:
    m = load_manifest_text(SEED_WEB).manifest
    assert (m.task.family, m.task.cpu, m.task.memory) == ("hello-web", 256, 512)
    assert m.app_container.image == "wizriz/hello-web:66f2a19"
    assert m.app_container.port == 80
    assert m.app_container.health_check_path == "/ping"
    assert m.app_container.command == ["node", "server", "-b http://hello-backend.demo.local/data"]
    assert m.virtual_node.backends == ["hello-backend.demo.local"]


def test_seed_backend_manifest_of_step_6_is_accepted_verbatim() -> None:
    m = load_manifest_text(SEED_BACKEND_STEP_6).manifest
    assert m.app_container.command == ["node", "server", "-g Yo", "-m Have a great day!"]
    assert m.virtual_node.backends == []


@pytest.mark.parametrize("name", ["hello-web-cfg", "hello-backend-cfg", "hello-backend-cfg-v2"])
def test_example_manifests_load_from_files(name: str) -> None:
    loaded = load_manifest(EXAMPLES / name / "manifest.yaml")
    assert loaded.manifest.task.family == name.removesuffix("-cfg-v2").removesuffix("-cfg")
    assert loaded.document.line_of("AppContainer.Image") is not None


def test_example_files_match_the_seed_texts() -> None:
    assert (EXAMPLES / "hello-web-cfg" / "manifest.yaml").read_text() == SEED_WEB
    assert load_manifest(EXAMPLES / "hello-backend-cfg-v2" / "manifest.yaml").manifest == \
        load_manifest_text(SEED_BACKEND_STEP_6).manifest


def test_defaults_reproduce_the_seed() -> None:
    m = load_manifest_text(MINIMAL).manifest
    assert (m.task.cpu, m.task.memory, m.app_container.port) == (256, 512, 80)
    assert m.app_container.command is None
    assert m.app_container.environment == {}
    assert m.virtual_node.backends == []


# --- Task.Family ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["a", "Hello_Web-2", "x" * 255, '"1e3"'])
def test_valid_families(family: str) -> None:
    assert load_manifest_text(manifest(f"Family: {family}")).manifest.task.family == family.strip('"')


@pytest.mark.parametrize(("family", "says"), [
    ('"hello web"', "is not a task family"),
    ('"hello.web"', "is not a task family"),
    ('""', "is not a task family"),
    ('"x" ', None),
    ("x" * 256, "at most 255"),
    ('"héllo"', "is not a task family"),
])
def test_invalid_families(family: str, says: str | None) -> None:
    if says is None:
        load_manifest_text(manifest(f"Family: {family}"))
        return
    problem = only_problem(manifest(f"Family: {family}"))
    assert problem.startswith("manifest.yaml:2: Task.Family: ")
    assert says in problem


# --- Task.Cpu and Task.Memory -----------------------------------------------------------------------

# Valid and invalid Fargate sizes, from the ECS documentation's table of task sizes.
@pytest.mark.parametrize(("cpu", "memory"), [
    (256, 512), (256, 1024), (256, 2048), (512, 1024), (512, 4096), (1024, 2048), (1024, 8192),
    (2048, 4096), (2048, 16384), (4096, 8192), (4096, 30720), (8192, 16384), (8192, 20480), (8192, 61440),
    (16384, 32768), (16384, 122880),
])
def test_fargate_sizes_are_accepted(cpu: int, memory: int) -> None:
    task = load_manifest_text(manifest(f"Family: web\n  Cpu: {cpu}\n  Memory: {memory}")).manifest.task
    assert (task.cpu, task.memory) == (cpu, memory)


@pytest.mark.parametrize(("cpu", "memory", "allowed"), [
    (256, 4096, "512, 1024, 2048"),
    (512, 512, "1024, 2048, 3072, 4096"),
    (1024, 1024, "2048-8192 in steps of 1024"),
    (4096, 32768, "8192-30720 in steps of 1024"),
    (8192, 17408, "16384-61440 in steps of 4096"),
    (16384, 36864, "32768-122880 in steps of 8192"),
])
def test_memory_must_fit_the_cpu(cpu: int, memory: int, allowed: str) -> None:
    problem = only_problem(manifest(f"Family: web\n  Cpu: {cpu}\n  Memory: {memory}"))
    assert problem.startswith("manifest.yaml:4: Task.Memory: ")
    assert f"does not fit Cpu {cpu}" in problem
    assert allowed in problem


def test_memory_alone_must_fit_the_default_cpu() -> None:
    assert "does not fit Cpu 256" in only_problem(manifest("Family: web\n  Memory: 4096"))


@pytest.mark.parametrize("cpu", [0, 128, 300, 3072, -256, 32768])
def test_cpu_must_be_a_fargate_size(cpu: int) -> None:
    problem = only_problem(manifest(f"Family: web\n  Cpu: {cpu}"))
    assert problem.startswith("manifest.yaml:3: Task.Cpu: ")
    assert "256, 512, 1024, 2048, 4096, 8192, 16384" in problem


@pytest.mark.parametrize("memory", [0, 100, 513, 123904])
def test_memory_must_be_a_fargate_size(memory: int) -> None:
    problem = only_problem(manifest(f"Family: web\n  Memory: {memory}"))
    assert problem.startswith("manifest.yaml:3: Task.Memory: ")
    assert "not a Fargate memory size" in problem


@pytest.mark.parametrize(("value", "says"), [
    ("256.0", "not a number (256.0); write 256"),
    ('"256"', "write it without quotes: 256"),
    ("1e3", "1e3 is text to YAML 1.1 but a number to YAML 1.2: quote it (\"1e3\") if it is text, or write 1000"),
    ('"1e3"', "write it as a plain integer: 1000"),
    ("true", "not a boolean (true)"),
    ("yes", "not a boolean (true, written 'yes')"),
    ("0x100", "write it in plain decimal (256)"),
    ("", "has no value (null): give an integer, or leave the key out for the default (256)"),
    ("[256]", "must be an integer, not a list"),
])
def test_cpu_must_be_a_plain_integer(value: str, says: str) -> None:
    problem = only_problem(manifest(f"Family: web\n  Cpu: {value}"))
    assert problem.startswith("manifest.yaml:3: Task.Cpu: ")
    assert says in problem


# --- AppContainer.Image -----------------------------------------------------------------------------

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("image", [
    "wizriz/hello-web:66f2a19",
    "nginx:1.25",
    "localhost:5000/app:1",
    "registry.example.com:8443/team/app:v1.2.3",
    "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.18.3.0-prod",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/orders-api:2.4.1",
    f"app@{DIGEST}",
    f"ghcr.io/org/app:1.0@{DIGEST}",
    "[::1]:5000/app:1",
    "my-registry:5000/app:latest",
])
def test_valid_images(image: str) -> None:
    loaded = load_manifest_text(manifest(app=f'Image: "{image}"\n  HealthCheckPath: /ping'))
    assert loaded.manifest.app_container.image == image


@pytest.mark.parametrize(("image", "says"), [
    ("nginx", "neither a tag nor a digest"),
    ("registry.example.com:5000/app", "neither a tag nor a digest"),
    ("Nginx:1", "lowercase repository name"),
    ("app:", "is not an image reference"),
    ("app@sha256:abc", "is not an image reference"),
    ("http://x.io/app:1", "is not an image reference"),
    ("a b:1", "is not an image reference"),
    ("registry.example.com:99999/app:1", "is not an image reference"),
    ("app:" + "t" * 129, "is not an image reference"),
    ("a/" * 130 + "b:1", "at most 255"),
    ("", "is not an image reference"),
])
def test_invalid_images(image: str, says: str) -> None:
    problem = only_problem(manifest(app=f'Image: "{image}"\n  HealthCheckPath: /ping'))
    assert problem.startswith("manifest.yaml:4: AppContainer.Image: ")
    assert says in problem
    assert len(problem) < 400


# --- AppContainer.Port ------------------------------------------------------------------------------

def port_manifest(port: str) -> str:
    return manifest(app=f"Image: web:1\n  HealthCheckPath: /ping\n  Port: {port}")


@pytest.mark.parametrize("port", [1, 80, 8080, 65535])
def test_valid_ports(port: int) -> None:
    assert load_manifest_text(port_manifest(str(port))).manifest.app_container.port == port


@pytest.mark.parametrize(("port", "says"), [
    ("0", "0 is not a port: 1-65535"),
    ("65536", "65536 is not a port: 1-65535"),
    ("-1", "-1 is not a port: 1-65535"),
    ("15000", "15000 belongs to the Envoy sidecar"),
    ("15001", "15001 belongs to the Envoy sidecar"),
    ("9901", "9901 belongs to the Envoy sidecar"),
    ('"80"', "must be an integer, not a string ('80'); write it without quotes: 80"),
    ("true", "must be an integer, not a boolean (true)"),
    ("on", "must be an integer, not a boolean (true, written 'on')"),
    ("80.0", "write 80"),
    ("0x50", "0x50 is read by YAML as the number 80"),
    ("010", "010 is read by YAML as the number 8"),
    ("1:20", "1:20 is read by YAML as the number 80"),
    ("null", "has no value (null): give an integer, or leave the key out for the default (80)"),
    ("", "has no value (null)"),
])
def test_invalid_ports(port: str, says: str) -> None:
    problem = only_problem(port_manifest(port))
    assert problem.startswith("manifest.yaml:6: AppContainer.Port: ")
    assert says in problem


def test_a_boolean_port_never_becomes_1() -> None:
    with pytest.raises(ValidationError):
        load_manifest_text(port_manifest("true"))


# --- AppContainer.HealthCheckPath -------------------------------------------------------------------

def path_manifest(path: str) -> str:
    return manifest(app=f"Image: web:1\n  HealthCheckPath: {json.dumps(path)}")


@pytest.mark.parametrize("path", ["/", "/ping", "/health/ready", "/a%20b", "/v1/status:check", "/a,b+c=d@e_f.g-h"])
def test_valid_health_check_paths(path: str) -> None:
    assert load_manifest_text(path_manifest(path)).manifest.app_container.health_check_path == path


@pytest.mark.parametrize(("path", "says"), [
    ("ping", "must start with '/'"),
    ("", "must start with '/'"),
    ("http://x/ping", "must start with '/'"),
    ("/a b", "not allowed: ' '"),
    ("/p;reboot", "';'"),
    ("/$(id)", "'$'"),
    ("/a|b", "'|'"),
    ("/`id`", "'`'"),
    ("/a'b", '"\'"'),
    ('/a"b', "'\"'"),
    ("/a>f", "'>'"),
    ("/a<f", "'<'"),
    ("/a#f", "'#'"),
    ("/a\\b", "'\\\\'"),
    ("/a*", "'*'"),
    ("/a[1]", "'['"),
    ("/{a,b}", "'{'"),
    ("/a!b", "'!'"),
    ("/~root", "'~'"),
    ("/a\nb", "'\\n'"),
    ("/caf\u00e9", "'é'"),
    ("/%zz", "a '%' not followed by two hex digits"),
    ("/" + "a" * 600, "at most 512"),
])
def test_health_check_paths_a_shell_would_interpret_are_refused(path: str, says: str) -> None:
    problem = only_problem(path_manifest(path))
    assert problem.startswith("manifest.yaml:5: AppContainer.HealthCheckPath: ")
    assert says in problem
    assert len(problem) < 400


@given(st.text(max_size=40) | st.text(alphabet="/?&=a%'\" ;$\\", max_size=40))
@settings(max_examples=300, deadline=None)
def test_no_accepted_health_check_path_can_change_the_command(text: str) -> None:
    path = "/" + text
    if health_path_problem(path) is None:
        command = health_check_command(path)
        # The URL stays one word and nothing after it becomes a command of its own.
        assert shlex.split(command) == ["curl", "-f", f"http://localhost:80{path}", "||", "exit", "1"]


def health_check_command(path: str) -> str:
    return version_from_text(path_manifest(path), service="web").app.health_check.command[1]


@pytest.mark.parametrize("path", ["/healthz?full=1", "/ping?a=1&b=2", "/status?verbose"])
def test_health_check_paths_may_carry_a_query_string(path: str) -> None:
    assert health_path_problem(path) is None
    assert health_check_command(path) == f"curl -f 'http://localhost:80{path}' || exit 1"


def test_a_plain_health_check_path_is_left_unquoted_as_in_the_original() -> None:
    assert health_check_command("/ping") == "curl -f http://localhost:80/ping || exit 1"


# --- AppContainer.Command ---------------------------------------------------------------------------

def command_manifest(command: str) -> str:
    return manifest(app=f"Image: web:1\n  HealthCheckPath: /ping\n  Command: {command}")


def test_command_as_a_string_suggests_the_list_form() -> None:
    problem = only_problem(command_manifest("node server -b http://x"))
    assert problem.startswith("manifest.yaml:6: AppContainer.Command: must be a list of strings, not a string")
    assert '["node", "server", "-b", "http://x"]' in problem


@pytest.mark.parametrize(("command", "path", "says"), [
    ("[]", "AppContainer.Command", "must not be empty"),
    ("", "AppContainer.Command", "has no value (null)"),
    ("[node, 1]", "AppContainer.Command[1]", "must be a string, not a number (1); quote it: \"1\""),
    ("[node, [a]]", "AppContainer.Command[1]", "must be a string, not a list"),
    ("[node, ~]", "AppContainer.Command[1]", "has no value (null)"),
    ('[node, "a\\0b"]', "AppContainer.Command[1]", "NUL character"),
    ("{a: b}", "AppContainer.Command", "must be a list of strings, not a mapping"),
    ("[" + ", ".join(["x"] * 257) + "]", "AppContainer.Command", "257 arguments; at most 256"),
    ("[" + "a" * 4097 + "]", "AppContainer.Command[0]", "at most 4096"),
])
def test_command_rules(command: str, path: str, says: str) -> None:
    problem = only_problem(command_manifest(command))
    assert problem.startswith(f"manifest.yaml:6: {path}: ")
    assert says in problem


def test_command_total_length_is_bounded() -> None:
    args = ", ".join(["a" * 4000] * 9)
    assert "in all; at most 32768" in only_problem(command_manifest(f"[{args}]"))


def test_whole_command_rules_are_reported_alongside_argument_problems() -> None:
    found = problems(command_manifest("[" + ", ".join(["x"] * 256 + ["1"]) + "]"))
    assert any("AppContainer.Command[256]: must be a string" in p for p in found)
    assert any("AppContainer.Command: has 257 arguments" in p for p in found)


# --- AppContainer.Environment (extension) -----------------------------------------------------------

def env_manifest(body: str) -> str:
    return manifest(app=f"Image: web:1\n  HealthCheckPath: /ping\n  Environment:\n{body}")


def test_environment_is_a_mapping_of_strings() -> None:
    m = load_manifest_text(env_manifest('    LOG_LEVEL: debug\n    _X1: "it\'s $HOME & more"\n')).manifest
    assert m.app_container.environment == {"LOG_LEVEL": "debug", "_X1": "it's $HOME & more"}


def test_reserved_names_are_reported_even_when_another_value_is_not_a_string() -> None:
    found = problems(env_manifest("    PORT: '1'\n    X: 5\n    HTTP_PROXY: p\n    1BAD: x\n"))
    assert found == [
        "manifest.yaml:7: AppContainer.Environment.PORT: 'PORT' is set by the platform and cannot be overridden",
        "manifest.yaml:8: AppContainer.Environment.X: must be a string, not a number (5); quote it: \"5\"",
        "manifest.yaml:9: AppContainer.Environment.HTTP_PROXY: 'HTTP_PROXY' is set by the platform and cannot "
        "be overridden",
        "manifest.yaml:10: AppContainer.Environment.1BAD: '1BAD' is not an environment variable name: letters, "
        "digits and '_', not starting with a digit",
    ]


@pytest.mark.parametrize(("body", "says"), [
    ("    A: ~\n", "has no value (null)"),
    ("    A: true\n", "quote it: \"true\""),
    ("    A: [x]\n", "must be a string, not a list"),
    ("    A: " + "v" * 4097 + "\n", "at most 4096"),
    ('    A: "x\\0y"\n', "NUL character"),
])
def test_environment_value_rules(body: str, says: str) -> None:
    problem = only_problem(env_manifest(body))
    assert problem.startswith("manifest.yaml:7: AppContainer.Environment.A: ")
    assert says in problem


def test_environment_size_is_bounded() -> None:
    body = "".join(f"    V{i}: x\n" for i in range(101))
    assert "has 101 variables; at most 100" in only_problem(env_manifest(body))


def test_environment_must_be_a_mapping() -> None:
    problem = only_problem(manifest(app="Image: web:1\n  HealthCheckPath: /ping\n  Environment: [A=1]"))
    assert 'AppContainer.Environment: must be a mapping of NAME: "value", not a list' in problem


# --- VirtualNode.Backends ---------------------------------------------------------------------------

def backends_manifest(backends: str) -> str:
    return manifest(extra=f"VirtualNode:\n  Backends: {backends}\n")


def test_backends_are_unique_dns_names() -> None:
    m = load_manifest_text(backends_manifest("[a.demo.local, b-2.demo.local, svc.other]")).manifest
    assert m.virtual_node.backends == ["a.demo.local", "b-2.demo.local", "svc.other"]


@pytest.mark.parametrize(("backends", "path", "says"), [
    ("[a.demo.local, a.demo.local]", "VirtualNode.Backends[1]", "listed twice (first as item 0)"),
    ("[hello-backend]", "VirtualNode.Backends[0]", "is not a virtual service DNS name"),
    ("[Hello.Demo.Local]", "VirtualNode.Backends[0]", "lowercase: 'hello.demo.local'"),
    ("[-a.demo.local]", "VirtualNode.Backends[0]", "is not a virtual service DNS name"),
    ("[a..local]", "VirtualNode.Backends[0]", "is not a virtual service DNS name"),
    ("[http://a.demo.local]", "VirtualNode.Backends[0]", "is not a virtual service DNS name"),
    ("[" + "a" * 64 + ".local]", "VirtualNode.Backends[0]", "is not a virtual service DNS name"),
    ("[5]", "VirtualNode.Backends[0]", "must be a string (a DNS name), not a number (5)"),
    ("a.demo.local", "VirtualNode.Backends", "must be a list of DNS names, not a string"),
    ("", "VirtualNode.Backends", "leave the key out for the default (empty)"),
    ("[" + ", ".join(f"s{i}.demo.local" for i in range(51)) + "]", "VirtualNode.Backends",
     "51 entries; App Mesh allows at most 50"),
])
def test_backend_rules(backends: str, path: str, says: str) -> None:
    problem = only_problem(backends_manifest(backends))
    assert problem.startswith(f"manifest.yaml:7: {path}: ")
    assert says in problem


def test_duplicates_point_at_the_repeated_line() -> None:
    text = manifest(extra="VirtualNode:\n  Backends:\n    - a.demo.local\n    - b.demo.local\n    - a.demo.local\n")
    assert only_problem(text).startswith("manifest.yaml:10: VirtualNode.Backends[2]: 'a.demo.local' is listed twice")


def test_duplicates_are_found_even_when_another_backend_is_bad() -> None:
    found = problems(backends_manifest("[a.demo.local, 5, a.demo.local]"))
    assert len(found) == 2
    assert any("Backends[1]: must be a string" in p for p in found)
    assert any("Backends[2]: 'a.demo.local' is listed twice" in p for p in found)


def test_virtual_node_may_be_left_out_but_not_left_empty() -> None:
    assert load_manifest_text(MINIMAL).manifest.virtual_node.backends == []
    problem = only_problem(manifest(extra="VirtualNode:\n"))
    assert problem.startswith("manifest.yaml:6: VirtualNode: has no value (null)")


# --- keys: unknown, misspelt, missing ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "path", "meant"), [
    (manifest("family: web"), "Task.family", "'Family'"),
    (manifest("Famly: web"), "Task.Famly", "'Family'"),
    (manifest(app="Image: web:1\n  HealthcheckPath: /ping"), "AppContainer.HealthcheckPath", "'HealthCheckPath'"),
    (manifest(app="image: web:1\n  HealthCheckPath: /ping"), "AppContainer.image", "'Image'"),
    (manifest(extra="VirtualNode:\n  Backend: [a.b]\n"), "VirtualNode.Backend", "'Backends'"),
    (manifest(extra="VirtualNode:\n  backends: [a.b]\n"), "VirtualNode.backends", "'Backends'"),
    (manifest("Family: web\n  Port: 8080"), "Task.Port", "'AppContainer.Port'"),
    (manifest(extra="Famliy: x\n"), "Famliy", "'Task.Family'"),
    (manifest(extra="virtualnode: {}\n"), "virtualnode", "'VirtualNode'"),
    (manifest(app="Image: web:1\n  HealthCheckPath: /ping\n  Env: {}"), "AppContainer.Env", "'Environment'"),
])
def test_misspelt_keys_get_a_did_you_mean(text: str, path: str, meant: str) -> None:
    problem = only_problem(text)
    assert f": {path}: is not a known key; did you mean {meant}?" in problem
    assert "Allowed in " in problem


def test_an_unknown_key_lists_what_is_allowed() -> None:
    problem = only_problem(manifest(extra="Replicas: 3\n"))
    assert problem == ("manifest.yaml:6: Replicas: is not a known key. "
                       "Allowed in the file: Task, AppContainer, VirtualNode, Rollout")


def test_field_names_are_not_synonyms_of_the_keys() -> None:
    # The model takes `family=` in Python; a file must spell the key as the original sample does.
    problems(manifest("family: web"))
    assert ServiceManifest.model_validate(
        {"Task": {"Family": "w"}, "AppContainer": {"Image": "w:1", "HealthCheckPath": "/"}}).task.family == "w"


def test_missing_keys_point_at_their_section() -> None:
    text = "Task:\n  Cpu: 256\n\nAppContainer:\n  Port: 8080\n  Image: web:1\n"
    assert problems(text) == [
        "manifest.yaml:1: Task.Family: is required (keys of Task: Family, Cpu, Memory)",
        "manifest.yaml:4: AppContainer.HealthCheckPath: is required (keys of AppContainer: Image, Port, "
        "HealthCheckPath, Command, Environment)",
    ]


def test_missing_sections_point_at_the_start_of_the_file() -> None:
    assert problems("\n# service\nVirtualNode: {}\n") == [
        "manifest.yaml:3: AppContainer: is required (keys of the file: Task, AppContainer, VirtualNode, Rollout)",
        "manifest.yaml:3: Task: is required (keys of the file: Task, AppContainer, VirtualNode, Rollout)",
    ]


# --- wrong shapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "says"), [
    ("- Task\n", "manifest.yaml:1: a manifest must be a mapping with Task and AppContainer, not a list"),
    ("hello\n", "not a string ('hello')"),
    ("~\n", "not nothing (null)"),
    ("42\n", "not a number (42)"),
])
def test_the_document_must_be_a_mapping(text: str, says: str) -> None:
    assert says in only_problem(text)


@pytest.mark.parametrize(("text", "says"), [
    ("Task: [web]\nAppContainer: {Image: w:1, HealthCheckPath: /}\n",
     "manifest.yaml:1: Task: must be a mapping with Family, Cpu, Memory, not a list"),
    ("Task: web\nAppContainer: {Image: w:1, HealthCheckPath: /}\n", "Task: must be a mapping"),
    ("Task:\nAppContainer: {Image: w:1, HealthCheckPath: /}\n", "Task: has no value (null)"),
    ("Task: {Family: w}\nAppContainer: docker.io/w:1\n", "AppContainer: must be a mapping"),
])
def test_sections_must_be_mappings(text: str, says: str) -> None:
    assert says in only_problem(text)


@pytest.mark.parametrize(("family", "says"), [
    ("on", 'not a boolean (true, written \'on\'); quote it: "on"'),
    ("yes", 'quote it: "yes"'),
    ("no", "not a boolean (false, written 'no')"),
    ("1.5", 'not a number (1.5); quote it: "1.5"'),
    ("123", 'quote it: "123"'),
    ("2021-04-29", 'not a date (2021-04-29); quote it: "2021-04-29"'),
    ("1e3", '1e3 is text to YAML 1.1 but a number to YAML 1.2: quote it ("1e3")'),
    ("0o17", "or write 15 if it is a number"),
    ("~", "has no value (null): give a string"),
    ("[a]", "not a list"),
])
def test_strings_written_as_other_yaml_types(family: str, says: str) -> None:
    problem = only_problem(manifest(f"Family: {family}"))
    assert problem.startswith("manifest.yaml:2: Task.Family: ")
    assert says in problem


# --- all problems at once ---------------------------------------------------------------------------

def test_every_problem_of_a_file_is_reported_at_once_in_line_order() -> None:
    text = """\
Task:
  family: "hello web"
  Cpu: 300
  Memory: 512
AppContainer:
  Image: "Hello-Web"
  Port: 15001
  HealthCheckPath: "ping; reboot"
  Command: node server
  Environment:
    PORT: "8080"
VirtualNode:
  Backends: [a.demo.local, a.demo.local]
Replicas: 2
"""
    found = problems(text)
    assert [p.split(": ")[1] for p in found] == [
        "Task.family", "Task.Cpu", "AppContainer.Image", "AppContainer.Port", "AppContainer.HealthCheckPath",
        "AppContainer.Command", "AppContainer.Environment.PORT", "VirtualNode.Backends[1]", "Replicas",
    ]
    assert [int(p.split(":")[1]) for p in found] == [2, 3, 6, 7, 8, 9, 11, 13, 14]


def test_reader_problems_and_model_problems_come_together() -> None:
    text = "Task:\n  Family: w\n  Family: x\nAppContainer:\n  Image: !!binary aGk=\n  HealthCheckPath: p\n"
    found = problems(text)
    assert found == [
        "manifest.yaml:3: Task.Family: duplicate key (first defined on line 2)",
        "manifest.yaml:5: AppContainer.Image: YAML tag '!!binary' is not allowed: only plain strings, numbers, "
        "booleans, lists and mappings",
        "manifest.yaml:6: AppContainer.HealthCheckPath: 'p' must start with '/', e.g. /ping",
    ]


def test_syntax_errors_stop_at_once_with_a_line() -> None:
    problem = only_problem("Task:\n  Family: web\n Cpu: 256\n")
    assert problem.startswith("manifest.yaml:3: YAML syntax error")


def test_long_values_are_never_echoed_in_full() -> None:
    huge = "x" * 80_000
    found = problems(f"Task:\n  Family: {huge}\nAppContainer:\n  Image: {huge}\n  HealthCheckPath: /{huge}\n")
    assert len(found) == 3
    assert all(len(p) < 300 for p in found)


def test_problems_carry_file_line_path_and_message(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(manifest("Family: web\n  Cpu: 3"))
    with pytest.raises(ValidationError) as err:
        load_manifest(path)
    [p] = err.value.problems
    assert (p.file, p.line, p.path) == (str(path), 3, "Task.Cpu")
    assert str(p).startswith(f"{path}:3: Task.Cpu: 3 is not a Fargate CPU size")


def test_broken_manifest_example_shows_several_typical_mistakes() -> None:
    with pytest.raises(ValidationError) as err:
        load_manifest(EXAMPLES / "broken-manifest.yaml")
    found = err.value.problems
    assert len(found) >= 6
    assert all(p.line is not None for p in found)
    assert any("did you mean" in p.message for p in found)


# --- schema -----------------------------------------------------------------------------------------

def test_schema_names_the_manifest_keys() -> None:
    schema = manifest_schema()
    json.dumps(schema)
    assert set(schema["properties"]) == {"Task", "AppContainer", "VirtualNode", "Rollout"}
    assert schema["required"] == ["Task", "AppContainer"]
    app = schema["$defs"]["AppContainer"]
    assert app["additionalProperties"] is False
    assert app["properties"]["Port"]["default"] == 80


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", [
    "VirtualNode:\n  Backends: [" + ",".join(["1", "a.demo.local"] * 9000) + "]\n",
    "AppContainer:\n  Command: [" + ",".join(["0x1"] * 18000) + "]\n",
])
def test_thousands_of_problems_are_found_in_linear_time(text: str) -> None:
    start = time.monotonic()
    found = problems(text)
    assert len(found) > 18000
    assert time.monotonic() - start < 5
