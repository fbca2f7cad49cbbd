"""Write the expected pictures of tests/support/graph_cases.py (review the diff before committing).

    .venv/bin/python tests/golden/regen_graph.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from meshpipe.mesh.graph import FORMATS, render  # noqa: E402
from support.graph_cases import CASES  # noqa: E402

SUFFIX = {"mermaid": "mmd", "dot": "dot", "svg": "svg"}


def main() -> None:
    out = HERE / "graph"
    out.mkdir(exist_ok=True)
    for name, make in CASES.items():
        for fmt in FORMATS:
            path = out / f"{name}.{SUFFIX[fmt]}"
            path.write_text(render(make(), fmt), encoding="utf-8")
            print(path.relative_to(HERE.parent.parent))


if __name__ == "__main__":
    main()
