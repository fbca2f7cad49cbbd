"""The sample manifests' templates, byte for byte. Regenerate with: .venv/bin/python tests/golden/regen.py"""

from __future__ import annotations

import pytest

from support import synth_cases as cases

RESULTS = cases.golden_results()


@pytest.mark.parametrize("result", RESULTS, ids=[f"{r.mesh}/{r.file_name}" for r in RESULTS])
def test_matches_golden(result: object) -> None:
    path = cases.golden_path(result)
    assert path.exists(), f"missing golden {path}; run .venv/bin/python tests/golden/regen.py"
    assert result.json_text == path.read_text(encoding="utf-8"), (
        f"{path.name} differs; if the change is deliberate run .venv/bin/python tests/golden/regen.py and review")


def test_every_golden_file_is_produced() -> None:
    produced = {cases.golden_path(r) for r in RESULTS}
    on_disk = set(cases.GOLDEN_DIR.glob("*/*.template.json"))
    assert on_disk == produced, "stale goldens: remove them or add their case"
