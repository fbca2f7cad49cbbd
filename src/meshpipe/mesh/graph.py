"""Pictures of an environment's mesh: ingress → gateway routes → services → versions (pure).

An engine supplies a :class:`Topology`; this module draws it as Mermaid (renders on GitHub), Graphviz dot,
SVG (its own small layered layout: no Graphviz needed) or compact text weight bars. Route weights label the
edges from a service to its versions; request rates and error rates, when the engine knows them, label
and colour them; a version's calls to other services are dotted edges to those services.

The layout reads left to right: the ingress, its gateway routes, then each service with its versions
beside it, a service placed one step right of the services that call it. Every node of a column has its
own row, so nothing overlaps however many services there are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape as html_escape

from meshpipe.naming import virtual_node_name, virtual_router_name


@dataclass(frozen=True)
class VersionNode:
    version: str
    weight: int  # in the service's route; 0 when not routed to
    status: str = ""
    healthy_tasks: int | None = None
    desired_tasks: int | None = None
    rps: float | None = None  # requests per second to this version, when known
    error_rate: float | None = None  # share of them answered 5xx, when known


@dataclass(frozen=True)
class ServiceNode:
    name: str
    versions: tuple[VersionNode, ...] = ()
    backends: tuple[str, ...] = ()  # services its versions call


@dataclass(frozen=True)
class GatewayRouteNode:
    name: str
    prefix: str
    service: str


@dataclass(frozen=True)
class Topology:
    environment: str
    services: tuple[ServiceNode, ...]
    gateway_routes: tuple[GatewayRouteNode, ...] = ()
    ingress: str = ""  # the ingress URL, when there is one

    def service(self, name: str) -> ServiceNode | None:
        return next((s for s in self.services if s.name == name), None)


# --- shared pieces -----------------------------------------------------------------------------------------

def _id(*parts: str) -> str:
    """A node id every format accepts: letters, digits and underscores."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def percent(weight: int, total: int) -> str:
    return f"{round(100 * weight / total) if total else 0}%"


def _total(service: ServiceNode) -> int:
    return sum(v.weight for v in service.versions)


def _tasks(v: VersionNode) -> str:
    return "" if v.desired_tasks is None else f"{v.healthy_tasks or 0}/{v.desired_tasks} tasks"


def _traffic(v: VersionNode) -> str:
    if v.rps is None:
        return ""
    errors = f", {v.error_rate * 100:.1f}% 5xx" if v.error_rate else ""
    return f"{v.rps:.1f} req/s{errors}"


def edge_colour(v: VersionNode) -> str:
    """Green under 1 % errors, amber under 5 %, red above; grey when unknown."""
    if v.error_rate is None or v.rps is None:
        return "#6b7280"
    if v.error_rate < 0.01:
        return "#16a34a"
    return "#d97706" if v.error_rate < 0.05 else "#dc2626"


def _version_label(service: str, v: VersionNode) -> list[str]:
    lines = [virtual_node_name(service, v.version)]
    detail = " ".join(x for x in (v.status, _tasks(v)) if x)
    if detail:
        lines.append(detail)
    return lines


def _edge_label(v: VersionNode, total: int) -> str:
    return " ".join(x for x in (percent(v.weight, total), _traffic(v)) if x)


def _reached(t: Topology) -> list[tuple[str, str]]:
    """(version id, backend service) calls, for backends that are services of the environment."""
    known = {s.name for s in t.services}
    return [(s.name, b) for s in t.services for b in s.backends if b in known]


# --- Mermaid ---------------------------------------------------------------------------------------------

def _mq(text: str) -> str:
    """A Mermaid label: quoted, with quotes and markup characters as entities."""
    return '"' + text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def _mlines(lines: list[str]) -> str:
    return _mq("\n".join(lines)).replace("\n", "<br/>")


def to_mermaid(t: Topology) -> str:
    lines = ["flowchart LR"]
    ingress = "ingress"
    lines.append(f"  {ingress}([{_mlines([f'ingress {t.environment}', *([t.ingress] if t.ingress else [])])}])")
    for gr in t.gateway_routes:
        gid = _id("gr", gr.name)
        lines.append(f"  {gid}[{_mq(gr.prefix)}]")
        lines.append(f"  {ingress} -->|{_mq(gr.name)}| {gid}")
        lines.append(f"  {gid} --> {_id('svc', gr.service)}")
    for s in t.services:
        sid = _id("svc", s.name)
        lines.append(f"  {sid}[[{_mq(s.name)}]]")
        total = _total(s)
        for v in s.versions:
            vid = _id("vn", s.name, v.version)
            lines.append(f"  {vid}({_mlines(_version_label(s.name, v))})")
            arrow = "-->" if v.weight else "-.->"
            lines.append(f"  {sid} {arrow}|{_mq(_edge_label(v, total))}| {vid}")
    for s in t.services:
        for v in s.versions:
            for b in s.backends:
                if t.service(b) is not None:
                    lines.append(f"  {_id('vn', s.name, v.version)} -.->|{_mq('calls')}| {_id('svc', b)}")
    return "\n".join(lines) + "\n"


# --- Graphviz dot ----------------------------------------------------------------------------------------

def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(t: Topology) -> str:
    out = [f"digraph {_dq('mesh ' + t.environment)} {{", "  rankdir=LR;",
           '  node [fontname="Helvetica", fontsize=11];', '  edge [fontname="Helvetica", fontsize=10];']
    ingress_label = f"ingress {t.environment}" + (f"\\n{t.ingress}" if t.ingress else "")
    out.append(f'  ingress [shape=oval, label="{ingress_label}"];')
    for gr in t.gateway_routes:
        gid = _id("gr", gr.name)
        out.append(f"  {gid} [shape=box, style=rounded, label={_dq(gr.prefix)}];")
        out.append(f"  ingress -> {gid} [label={_dq(gr.name)}];")
        out.append(f"  {gid} -> {_id('svc', gr.service)};")
    for s in t.services:
        sid = _id("svc", s.name)
        out.append(f"  {sid} [shape=box3d, label={_dq(s.name + chr(10) + virtual_router_name(s.name))}];"
                   .replace("\n", "\\n"))
        total = _total(s)
        for v in s.versions:
            vid = _id("vn", s.name, v.version)
            out.append(f"  {vid} [shape=box, label={_dq(chr(10).join(_version_label(s.name, v)))}];"
                       .replace("\n", "\\n"))
            width = 1 + 4 * v.weight / total if total else 1
            style = "solid" if v.weight else "dashed"
            out.append(f"  {sid} -> {vid} [label={_dq(_edge_label(v, total))}, penwidth={width:.1f}, "
                       f"style={style}, color={_dq(edge_colour(v))}];")
    for s in t.services:
        for v in s.versions:
            for b in s.backends:
                if t.service(b) is not None:
                    out.append(f"  {_id('vn', s.name, v.version)} -> {_id('svc', b)} [style=dotted, label=calls];")
    out.append("}")
    return "\n".join(out) + "\n"


# --- SVG -------------------------------------------------------------------------------------------------

CHAR_W = 7.5  # monospace at 12 px, with a little room
LINE_H = 15.0
PAD = 8.0
ROW_GAP = 14.0
COL_GAP = 170.0  # room for an edge's label between two columns


@dataclass
class Box:
    id: str
    lines: list[str]
    column: int
    kind: str  # ingress | route | service | version
    owner: str = ""  # the service of a service or version box
    x: float = 0.0
    y: float = 0.0
    want_y: float = 0.0

    @property
    def w(self) -> float:
        return max(len(line) for line in self.lines) * CHAR_W + 2 * PAD

    @property
    def h(self) -> float:
        return len(self.lines) * LINE_H + 2 * PAD


@dataclass
class Layout:
    boxes: dict[str, Box] = field(default_factory=dict)
    width: float = 0.0
    height: float = 0.0


def _depths(t: Topology) -> dict[str, int]:
    """How far right a service sits: 0 for what the ingress reaches, +1 per call, cycles cut."""
    depth = {s.name: 0 for s in t.services}
    for _ in range(len(t.services)):
        changed = False
        for caller, callee in _reached(t):
            if depth[callee] < depth[caller] + 1 <= len(t.services):
                depth[callee] = depth[caller] + 1
                changed = True
        if not changed:
            break
    return depth


def layout(t: Topology) -> Layout:
    """Columns: ingress, gateway routes, then (service, its versions) per call depth. In a column each box
    sits at or below where it would like to be, and below the previous box: no two boxes overlap."""
    lay = Layout()
    depth = _depths(t)
    boxes = lay.boxes
    boxes["ingress"] = Box("ingress", [f"ingress {t.environment}", *([t.ingress] if t.ingress else [])], 0, "ingress")
    for gr in t.gateway_routes:
        boxes[_id("gr", gr.name)] = Box(_id("gr", gr.name), [gr.prefix, gr.name], 1, "route")
    for s in sorted(t.services, key=lambda s: (depth[s.name], s.name)):
        col = 2 + 2 * depth[s.name]
        boxes[_id("svc", s.name)] = Box(_id("svc", s.name), [s.name, virtual_router_name(s.name)], col, "service",
                                        s.name)
        for v in s.versions:
            boxes[_id("vn", s.name, v.version)] = Box(_id("vn", s.name, v.version), _version_label(s.name, v),
                                                      col + 1, "version", s.name)
    columns: dict[int, list[Box]] = {}
    for box in boxes.values():
        columns.setdefault(box.column, []).append(box)
    x = PAD
    for col in sorted(columns):
        for box in columns[col]:
            box.x = x
        x += max(b.w for b in columns[col]) + COL_GAP
    # Rows: versions stack under each other per service; a service sits level with its first version;
    # routes level with their service; the ingress level with the first route.
    for col in sorted(columns, reverse=True):
        y = PAD
        for box in columns[col]:
            if box.kind == "service":
                first = next((b for b in boxes.values() if b.kind == "version" and b.owner == box.owner), None)
                box.want_y = first.y if first else 0.0
            box.y = max(y, box.want_y)
            y = box.y + box.h + ROW_GAP
    for col in (1, 0):
        y = PAD
        for box in columns.get(col, []):
            targets = ([boxes[_id("svc", gr.service)] for gr in t.gateway_routes
                        if _id("gr", gr.name) == box.id and _id("svc", gr.service) in boxes] if col == 1
                       else columns.get(1, [])[:1])
            box.want_y = targets[0].y if targets else 0.0
            box.y = max(y, box.want_y)
            y = box.y + box.h + ROW_GAP
    lay.width = x - COL_GAP + PAD
    lay.height = max((b.y + b.h for b in boxes.values()), default=0.0) + PAD
    return lay


_FILL = {"ingress": "#e0e7ff", "route": "#f3f4f6", "service": "#dbeafe", "version": "#ecfdf5"}


def _curve(a: Box, b: Box) -> tuple[str, float, float]:
    """A cubic curve from ``a``'s right side to ``b``'s left side (or back, for calls leftwards)."""
    x1, y1 = a.x + a.w, a.y + a.h / 2
    x2, y2 = b.x, b.y + b.h / 2
    if x2 < x1:  # a call to a service left of the caller: from its bottom, round below
        x1, y1, x2, y2 = a.x + a.w / 2, a.y + a.h, b.x + b.w / 2, b.y + b.h
        bend = max(y1, y2) + 40
        return f"M{x1:.1f},{y1:.1f} C{x1:.1f},{bend:.1f} {x2:.1f},{bend:.1f} {x2:.1f},{y2:.1f}", (x1 + x2) / 2, bend
    mid = (x1 + x2) / 2
    return f"M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}", mid, (y1 + y2) / 2


def to_svg(t: Topology) -> str:
    lay = layout(t)
    b = lay.boxes
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height + 40:.0f}" '
           f'viewBox="0 0 {lay.width:.0f} {lay.height + 40:.0f}" font-family="monospace" font-size="12">',
           f"<title>{html_escape('mesh ' + t.environment)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" '
           'markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/>'
           "</marker></defs>"]

    def edge(a: str, z: str, label: str, width: float = 1.2, colour: str = "#6b7280", dash: str = "",
             data: str = "") -> None:
        if a not in b or z not in b:
            return
        path, lx, ly = _curve(b[a], b[z])
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="edge" data-from="{a}" data-to="{z}"{data}><path d="{path}" fill="none" '
                   f'stroke="{colour}" stroke-width="{width:.1f}"{dashes} marker-end="url(#arrow)"/>')
        if label:
            # A white halo keeps the label readable where it crosses another edge.
            out.append(f'<text x="{lx:.1f}" y="{ly - 5:.1f}" text-anchor="middle" fill="#374151" stroke="#ffffff" '
                       f'stroke-width="3" paint-order="stroke">{html_escape(label)}</text>')
        out.append("</g>")

    for gr in t.gateway_routes:
        edge("ingress", _id("gr", gr.name), "")
        edge(_id("gr", gr.name), _id("svc", gr.service), "")
    for s in t.services:
        total = _total(s)
        for v in s.versions:
            edge(_id("svc", s.name), _id("vn", s.name, v.version), _edge_label(v, total),
                 width=1 + 5 * v.weight / total if total else 1, colour=edge_colour(v), dash="" if v.weight else "4 3",
                 data=f' data-weight="{v.weight}"')
    for s in t.services:
        for v in s.versions:
            for backend in s.backends:
                edge(_id("vn", s.name, v.version), _id("svc", backend), "calls", dash="2 3")
    for box in b.values():
        out.append(f'<g class="node {box.kind}" id="{box.id}"><rect x="{box.x:.1f}" y="{box.y:.1f}" '
                   f'width="{box.w:.1f}" height="{box.h:.1f}" rx="6" fill="{_FILL[box.kind]}" stroke="#374151"/>')
        for i, line in enumerate(box.lines):
            out.append(f'<text x="{box.x + PAD:.1f}" y="{box.y + PAD + (i + 0.8) * LINE_H:.1f}"'
                       f'{" font-weight=" + chr(34) + "bold" + chr(34) if i == 0 else ""}>{html_escape(line)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- text ------------------------------------------------------------------------------------------------

def weight_bars(service: str, weights: list[tuple[str, int]], width: int = 24) -> list[str]:
    """One line per version: its id, a bar of ``width`` cells filled by its share, and the share."""
    total = sum(w for _, w in weights)
    name_w = max((len(v) for v, _ in weights), default=0)
    lines = []
    for version, weight in weights:
        filled = round(width * weight / total) if total else 0
        lines.append(f"{version:<{name_w}}  {'█' * filled}{'░' * (width - filled)}  {percent(weight, total):>4}")
    return lines


FORMATS = {"mermaid": to_mermaid, "dot": to_dot, "svg": to_svg}


def render(t: Topology, fmt: str) -> str:
    try:
        return FORMATS[fmt](t)
    except KeyError:
        from meshpipe.errors import UserError

        raise UserError(f"unknown graph format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}") from None
