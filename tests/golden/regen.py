"""Rewrite the golden version-stack templates and ``synth --diff`` outputs (tests/support/synth_cases.py says
what they are).

After a deliberate change to synthesis, regenerate them and review the diff:

    .venv/bin/python tests/golden/regen.py            # rewrite tests/golden/<mesh>/*.template.json
    .venv/bin/python tests/golden/regen.py --check    # exit 1 if any golden is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    # Run as a script, Python puts only tests/golden on the path; the cases live in tests/support.
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from meshpipe.mesh.flavour import MeshFlavour
    from support.synth_cases import REPO, diff_golden_path, diff_golden_text, golden_path, golden_results

    check = "--check" in argv
    stale = []
    # The templates first: the synth --diff goldens compare against them.
    goldens = [(golden_path(r), r.json_text) for r in golden_results()]
    for path, text in goldens + [(diff_golden_path(mesh), diff_golden_text(mesh)) for mesh in MeshFlavour]:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'out of date' if check else 'rewrote'}: {path.relative_to(REPO)}")
    if not stale:
        print("goldens are up to date")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
