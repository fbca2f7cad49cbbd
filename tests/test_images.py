"""Image -> local command mapping: built-in table, user file, clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from meshpipe.engines.local.tasks.images import (
    BUILTIN_MAPPINGS,
    ImageMapping,
    load_user_mappings,
    local_command,
    local_program,
    map_command,
    parse_user_mappings,
    repository_of,
)
from meshpipe.errors import UserError, ValidationError
from meshpipe.manifest import load_manifest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PY = sys.executable


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MESHPIPE_HOME", str(tmp_path / "mp"))


@pytest.mark.parametrize(("image", "module"), [
    ("wizriz/hello-web:66f2a19", "hello_web"),
    ("wizriz/hello-web:latest", "hello_web"),
    ("docker.io/wizriz/hello-backend:66f2a19", "hello_backend"),
])
def test_seed_images_drop_node_server_and_keep_the_arguments(image: str, module: str) -> None:
    argv = local_command(image, ("node", "server", "-b http://hello-backend.demo.local/data"))
    assert argv == [PY, "-m", f"meshpipe.samples.{module}", "-b http://hello-backend.demo.local/data"]


def test_bundled_sample_images_pass_the_whole_command_as_arguments() -> None:
    assert local_command("meshpipe/hello-backend:1.0", ("-g Hello", "-m Welcome to our world!")) == [
        PY, "-m", "meshpipe.samples.hello_backend", "-g Hello", "-m Welcome to our world!"]
    assert local_command("meshpipe/hello-web:1.0", None) == [PY, "-m", "meshpipe.samples.hello_web"]


def test_seed_manifests_map_to_the_samples() -> None:
    for cfg, module, args in [("hello-web-cfg", "hello_web", ["-b http://hello-backend.demo.local/data"]),
                              ("hello-backend-cfg-v2", "hello_backend", ["-g Yo", "-m Have a great day!"])]:
        app = load_manifest(EXAMPLES / cfg / "manifest.yaml").manifest.app_container
        assert local_command(app.image, tuple(app.command or ())) == [PY, "-m", f"meshpipe.samples.{module}", *args]


def test_python_sample_manifests_map_to_the_samples() -> None:
    app = load_manifest(EXAMPLES / "python" / "hello-web-cfg" / "manifest.yaml").manifest.app_container
    assert local_command(app.image, tuple(app.command or ())) == [
        PY, "-m", "meshpipe.samples.hello_web", "-b http://hello-backend.demo.local/data"]


def test_local_exec_images_run_their_command_as_written() -> None:
    assert local_command("local-exec/tool:1", ("/bin/sleep", "5")) == ["/bin/sleep", "5"]
    with pytest.raises(UserError, match="has no Command"):
        local_command("local-exec/tool:1", None)


def test_an_unmapped_image_says_how_to_add_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        local_command("nginx:1.25", ("nginx", "-g", "daemon off;"))
    assert "does not know how to run image 'nginx:1.25'" in info.value.message
    assert info.value.hint is not None
    assert str(tmp_path / "mp" / "images.yaml") in info.value.hint
    assert 'match: "nginx"' in info.value.hint


def test_a_command_shorter_than_the_words_to_drop_is_refused() -> None:
    with pytest.raises(UserError, match="replaces the first 2"):
        local_command("wizriz/hello-web:1", ("-b http://x/data",))


def test_user_mappings_come_first_and_expand_python(tmp_path: Path) -> None:
    home = tmp_path / "mp"
    home.mkdir()
    (home / "images.yaml").write_text(
        "# my images\n"
        "images:\n"
        "  - match: \"123456789012.dkr.ecr.us-east-1.amazonaws.com/orders\"\n"
        "    argv: [\"{python}\", \"-m\", \"orders.server\"]\n"
        "    drop: 2\n"
        "  - match: \"wizriz/*\"\n"
        "    argv: [\"/opt/custom\"]\n")
    assert local_command("123456789012.dkr.ecr.us-east-1.amazonaws.com/orders:7", ("python", "server.py", "-v")) == [
        PY, "-m", "orders.server", "-v"]
    # The user's wildcard shadows the built-in wizriz entries.
    assert local_command("wizriz/hello-web:1", ("node", "server")) == ["/opt/custom", "node", "server"]


def test_empty_or_comment_only_user_file_adds_nothing(tmp_path: Path) -> None:
    home = tmp_path / "mp"
    home.mkdir()
    (home / "images.yaml").write_text("# nothing yet\n\n")
    assert load_user_mappings(home) == ()
    assert load_user_mappings(tmp_path / "absent") == ()


def test_a_bad_user_file_is_reported_with_lines(tmp_path: Path) -> None:
    home = tmp_path / "mp"
    home.mkdir()
    (home / "images.yaml").write_text("images:\n  - match: x\n    argv: \"not a list\"\n    drop: -1\n    dorp: 2\n")
    with pytest.raises(ValidationError) as info:
        local_command("x:1", None, home=home)
    text = str(info.value)
    assert "images.yaml:3: images[0].argv: must be a list of non-empty strings" in text
    assert "images.yaml:4: images[0].drop: must be a whole number, 0 or more" in text
    assert "images.yaml:5: images[0].dorp: is not a known key" in text


def test_parse_user_mappings_is_pure() -> None:
    assert parse_user_mappings({"images": [{"match": "a/*", "argv": ["run"], "drop": 1}]}) == (
        ImageMapping("a/*", ("run",), 1, origin="images.yaml:-"),)
    with pytest.raises(ValidationError):
        parse_user_mappings(["images"])


def test_map_command_with_explicit_table_and_python() -> None:
    table = (ImageMapping("team/app", ("{python}", "app.py"), 1),)
    assert map_command("team/app:2", ["ignored", "--flag"], table, python="/py") == ["/py", "app.py", "--flag"]
    with pytest.raises(UserError):
        map_command("team/other:2", None, table)


def test_repository_of_and_invalid_reference() -> None:
    assert repository_of("wizriz/hello-web:66f2a19") == "wizriz/hello-web"
    assert repository_of("localhost:5000/team/app:1") == "localhost:5000/team/app"
    with pytest.raises(UserError, match="not an image reference"):
        repository_of("Not An Image")
    assert {m.match for m in BUILTIN_MAPPINGS} >= {"wizriz/hello-web", "wizriz/hello-backend",
                                                   "meshpipe/hello-web", "meshpipe/hello-backend"}


@pytest.mark.parametrize(("command", "drop"), [
    (("node", "server", "-b http://hello-backend.demo.local/data"), 2),
    (("python", "server.py", "--port", "80"), 2),
    (("./run", "--fast"), 1),
    (("-g", "Hello"), 0),
])
def test_the_failure_suggests_the_drop_for_the_command_it_saw(command: tuple[str, ...], drop: int) -> None:
    with pytest.raises(UserError) as info:
        local_command("mycorp/orders:1.1", command)
    hint = info.value.hint or ""
    assert f"drop: {drop}    # the Command it saw is {list(command)!r}" in hint, hint
    assert f"{list(command[drop:])!r} is passed on" in hint


def test_a_mapping_that_drops_more_than_the_command_has_suggests_the_right_drop() -> None:
    with pytest.raises(UserError) as short:
        local_command("wizriz/hello-web:1", ("-b http://x/data",))
    assert "drop: 0    # the Command it saw is ['-b http://x/data']" in (short.value.hint or "")


def test_the_tag_chooses_the_program_its_folder_and_variables(tmp_path: Path) -> None:
    home = tmp_path / "mp"
    for tag in ("1.1", "1.2"):
        (home / "src" / f"orders-{tag}").mkdir(parents=True)
    (home / "images.yaml").write_text(
        "images:\n"
        "  - match: \"mycorp/orders\"\n"
        "    argv: [\"{python}\", \"server-{tag}.py\"]\n"
        "    drop: 2\n"
        "    cwd: \"src/orders-{tag}\"\n"
        "    env: {ORDERS_VERSION: \"v{tag}\", MODE: fixed}\n")
    one = local_program("mycorp/orders:1.1", ("python", "server.py", "-v"))
    two = local_program("mycorp/orders:1.2", ("python", "server.py", "-v"))
    assert one.argv == [PY, "server-1.1.py", "-v"] and two.argv == [PY, "server-1.2.py", "-v"]
    assert (one.cwd, two.cwd) == (str(home / "src" / "orders-1.1"), str(home / "src" / "orders-1.2"))
    assert dict(one.env) == {"ORDERS_VERSION": "v1.1", "MODE": "fixed"}
    with pytest.raises(UserError, match="is not a folder on this machine") as missing:
        local_program("mycorp/orders:2.0", ("python", "server.py"))
    assert "'2.0'" in (missing.value.hint or "")
    (home / "images.yaml").write_text("images:\n  - match: x\n    cwd: 3\n    env: {\"1BAD\": x}\n")
    with pytest.raises(ValidationError) as bad:
        local_program("x:1", ("a",))
    assert "images[0].cwd: must be a folder path" in str(bad.value) and "images[0].env: must map" in str(bad.value)
