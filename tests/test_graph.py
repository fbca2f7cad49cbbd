"""Pictures of the mesh (pure): golden files, Mermaid checked by Mermaid's own flowchart grammar, SVG
checked as XML with no two boxes overlapping, and the text weight bars."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from meshpipe.errors import UserError
from meshpipe.mesh.graph import FORMATS, layout, render, to_mermaid, to_svg, weight_bars
from support.graph_cases import CASES, big, demo, readme

GOLDEN = Path(__file__).resolve().parent / "golden" / "graph"
SUFFIX = {"mermaid": "mmd", "dot": "dot", "svg": "svg"}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_output_matches_its_golden_file(case: str, fmt: str) -> None:
    expected = (GOLDEN / f"{case}.{SUFFIX[fmt]}").read_text(encoding="utf-8")
    assert render(CASES[case](), fmt) == expected, "regenerate with tests/golden/regen_graph.py and review the diff"


# mermaid-syntax-parser bundles Mermaid's jison flowchart grammar and runs it in SpiderMonkey
# (pythonmonkey). It changes multiprocessing's start method when imported, so it runs in its own process.
_VALIDATE = """
import json, sys
from mermaid_parser import validate_mermaid
if __name__ == "__main__":
    print(json.dumps([validate_mermaid(d) for d in json.loads(sys.stdin.read())]))
"""


def _mermaid_valid(diagrams: list[str]) -> list[bool]:
    done = subprocess.run([sys.executable, "-c", _VALIDATE], input=json.dumps(diagrams), capture_output=True,
                          text=True, timeout=240, check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(300)
def test_mermaid_output_parses_with_mermaids_grammar() -> None:
    demo_chart, big_chart = to_mermaid(demo()), to_mermaid(big())
    # A broken arrow and an unclosed shape: the parser must refuse them, or it proves nothing.
    broken = demo_chart.replace("-->|", "-/->|", 1)
    unclosed = demo_chart.replace('[["hello-web"]]', '[["hello-web"]', 1)
    assert _mermaid_valid([demo_chart, big_chart, broken, unclosed]) == [True, True, False, False]


def test_the_readmes_picture_is_what_graph_draws() -> None:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)
    assert block == to_mermaid(readme())


def test_labels_cannot_break_the_mermaid_syntax() -> None:
    t = demo()
    from dataclasses import replace

    from meshpipe.mesh.graph import GatewayRouteNode

    tricky = replace(t, gateway_routes=(GatewayRouteNode('r-"x"', '/a"b<c>|d', "hello-web"),))
    chart = to_mermaid(tricky)
    line = next(line for line in chart.splitlines() if line.startswith("  gr_"))
    assert line == '  gr_r__x_["/a#quot;b#lt;c#gt;|d"]'


def _boxes(svg: str) -> dict[str, tuple[float, float, float, float]]:
    root = ET.fromstring(svg)
    found = {}
    for g in root.iter(f"{SVG}g"):
        rect = g.find(f"{SVG}rect")
        if "node" in (g.get("class") or "") and rect is not None:
            found[g.get("id") or ""] = tuple(float(rect.get(k) or 0) for k in ("x", "y", "width", "height"))
    return found  # type: ignore[return-value]


def test_svg_shows_every_service_and_version_with_its_weight() -> None:
    svg = to_svg(demo())
    root = ET.fromstring(svg)
    boxes = _boxes(svg)
    assert {"ingress", "gr_r_ingress_hello_service", "svc_hello_web", "svc_hello_backend",
            "vn_hello_web_66f2a19a", "vn_hello_backend_e9d5f17a", "vn_hello_backend_0badc0de",
            "vn_hello_backend_deadbeef"} == set(boxes)
    weights = {(g.get("data-from"), g.get("data-to")): g.get("data-weight") for g in root.iter(f"{SVG}g")
               if g.get("class") == "edge" and g.get("data-weight") is not None}
    assert weights[("svc_hello_backend", "vn_hello_backend_e9d5f17a")] == "90"
    assert weights[("svc_hello_backend", "vn_hello_backend_0badc0de")] == "10"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "10% 2.0 req/s, 25.0% 5xx" in texts and "90% 18.0 req/s" in texts


def test_svg_of_20_services_with_3_versions_has_no_overlaps() -> None:
    t = big(20, 3)
    boxes = list(_boxes(to_svg(t)).items())
    assert len(boxes) == 1 + len(t.gateway_routes) + 20 + 60
    for i, (a, (ax, ay, aw, ah)) in enumerate(boxes):
        for b, (bx, by, bw, bh) in boxes[i + 1:]:
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
            assert apart, f"{a} overlaps {b}"
    lay = layout(t)
    assert all(box.x >= 0 and box.x + box.w <= lay.width and box.y + box.h <= lay.height
               for box in lay.boxes.values())
    # Callees sit right of their callers.
    assert lay.boxes["svc_svc_01"].x > lay.boxes["svc_svc_00"].x


def test_weight_bars() -> None:
    bars = weight_bars("hello-backend", [("e9d5f17a", 90), ("0badc0de", 10)], width=10)
    assert bars == ["e9d5f17a  █████████░   90%", "0badc0de  █░░░░░░░░░   10%"]
    assert weight_bars("x", [("a", 0)], width=4) == ["a  ░░░░    0%"]


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown graph format 'png'"):
        render(demo(), "png")
