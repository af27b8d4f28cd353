"""The taxonomy report as one self-contained HTML page: inline CSS, inline SVG charts drawn here, no script.

Every string that came from a trace (run ids, tool and milestone names, messages, sources) is escaped; the
page's Content-Security-Policy forbids scripts and remote loads, so a hostile trace cannot reach out.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence

from ._report import OUTCOMES, Report
from ._types import ACTIONS, KINDS

__all__ = ["render_html"]

# Colour per failure class, in taxonomy order (distinct hues, readable on white); foreign kinds are grey.
_KIND_COLOURS: dict[str, str] = dict(
    zip(
        KINDS,
        (
            "#e6194b",
            "#f58231",
            "#ffe119",
            "#bcf60c",
            "#3cb44b",
            "#46f0f0",
            "#4363d8",
            "#911eb4",
            "#f032e6",
            "#9a6324",
            "#800000",
            "#808000",
            "#000075",
            "#fabebe",
        ),
        strict=True,
    )
)
_ACTION_COLOURS = {
    "allow": "#3a9d5d",
    "block": "#e0a030",
    "clarify": "#4a90d9",
    "escalate": "#8e5cc4",
    "stop": "#d0453a",
}
_OTHER = "#9e9e9e"
# No script at all and nothing remote: only the page's own inline style may apply.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;
background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c9cfdb}
main{padding:8px 28px 28px;max-width:1200px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:14px 18px;margin:16px 0}
h2{font-size:16px;margin:0 0 10px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#4a5263;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f0f2f5;padding:1px 4px;
border-radius:3px}
.muted{color:#6b7385}.msg{display:block;color:#6b7385;font-size:12px;max-width:520px;overflow-wrap:anywhere}
.tiles{display:flex;gap:10px;flex-wrap:wrap}
.tile{border:1px solid #e1e4ea;border-radius:6px;padding:8px 14px;min-width:90px}
.tile b{display:block;font-size:20px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;list-style:none;padding:0;margin:8px 0 0}
.legend li{display:flex;align-items:center;gap:5px;font-size:12px}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px}
svg{display:block;max-width:100%;height:auto}svg text{font:11px system-ui,sans-serif;fill:#4a5263}
"""


def render_html(report: Report, *, title: str = "headway: failures by class") -> str:
    """The report as a standalone HTML page (a string; write it with UTF-8)."""
    r = report
    span = f"{_day(r.first_ts)} to {_day(r.last_ts)} (UTC)" if r.first_ts is not None else "no runs"
    sources = ", ".join(_e(s) for s in r.sources) or "no sources"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1><p>{r.runs:,} runs, {r.events:,} events, {span}; from {sources}</p>"
        "</header><main>",
        _outcomes(r),
        _classes(r),
        _timeline(r),
        _funnel(r),
        _tools(r),
        f'<p class="muted">Generated {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())} by headway. '
        "Inspect a run with <code>headway show RUN_ID</code>.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


# ---- sections ---------------------------------------------------------------------------------------------


def _outcomes(r: Report) -> str:
    tiles = "".join(
        f'<div class="tile"><b>{r.outcomes.get(o, 0):,}</b>{o}</div>' for o in OUTCOMES if r.outcomes.get(o)
    )
    tiles = tiles or "no runs"
    return f'<section id="outcomes"><h2>How runs ended</h2><div class="tiles">{tiles}</div></section>'


def _classes(r: Report) -> str:
    head = (
        '<tr><th class="n">#</th><th>class</th><th class="n">runs</th><th class="n">% of runs</th>'
        '<th class="n">findings</th><th>worst</th><th class="n">score</th><th>example runs</th></tr>'
    )
    rows = []
    for i, c in enumerate(r.classes, 1):
        share = f"{100 * c.runs / r.runs:.1f}%" if r.runs else "-"
        examples = " ".join(f'<code title="{_e(x.message)}">{_e(x.run_id)}</code>' for x in c.examples)
        first = f'<span class="msg">{_e(_clip(c.examples[0].message, 200))}</span>' if c.examples else ""
        rows.append(
            f'<tr data-kind="{_e(c.kind)}"><td class="n">{i}</td>'
            f'<td><span class="sw" style="background:{_kind_colour(c.kind)}"></span> <b>{_e(c.kind)}</b>'
            f'<span class="msg">{_e(c.meaning)}</span></td><td class="n">{c.runs:,}</td>'
            f'<td class="n">{share}</td><td class="n">{c.findings:,}</td><td>{_e(c.severity)}</td>'
            f'<td class="n">{c.score:,.2f}</td><td>{examples}{first}</td></tr>'
        )
    body = f"<table>{head}{''.join(rows)}</table>" if rows else '<p class="muted">No findings recorded.</p>'
    return (
        '<section id="classes"><h2>Failure classes, ranked by frequency &times; severity</h2>'
        '<p class="muted">A run counts once per class it shows; the score adds the worst severity weight of '
        f"each such run.</p>{body}</section>"
    )


def _timeline(r: Report) -> str:
    buckets = r.timeline
    kinds = [c.kind for c in sorted(r.classes, key=lambda c: _kind_index(c.kind)) if c.runs]
    width, height, left, bottom, top = 960, 280, 46, 34, 12
    plot_h = height - bottom - top
    peak = max((sum(b.classes.values()) for b in buckets), default=0)
    out = [_axis(left, top, width - 36, plot_h, peak)]
    if buckets and peak:
        step = (width - 36 - left) / len(buckets)
        bar = min(max(step * 0.8, 1.0), 48.0)
        every = max(1, round(len(buckets) / 12))
        for i, b in enumerate(buckets):
            x = left + i * step + (step - bar) / 2
            y = float(top + plot_h)
            label = _bucket_label(b.start, r.bucket_seconds)
            for kind in kinds:
                n = b.classes.get(kind, 0)
                if not n:
                    continue
                h = plot_h * n / peak
                y -= h
                out.append(
                    f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                    f'fill="{_kind_colour(kind)}"><title>{_e(label)}: {_e(kind)} in {n:,} of '
                    f"{b.runs:,} runs</title></rect>"
                )
            if i % every == 0:
                out.append(
                    f'<text x="{left + i * step + step / 2:.1f}" y="{height - bottom + 16}" '
                    f'text-anchor="middle">{_e(label)}</text>'
                )
    else:
        out.append(_empty(width, height, "no failures recorded"))
    unit = {3_600: "hour", 21_600: "6 hours", 86_400: "day", 604_800: "week"}.get(r.bucket_seconds, "month")
    chart = _svg("timeline-chart", "Failures by class over time", width, height, out)
    return (
        '<section id="timeline"><h2>Failures by class over time</h2><p class="muted">Runs showing each '
        f"class, by the {unit} they started (UTC).</p>{chart}{_legend((k, _kind_colour(k)) for k in kinds)}"
        "</section>"
    )


def _funnel(r: Report) -> str:
    width, left, row, gap = 960, 170, 30, 14
    steps = [("all runs", r.runs, 0), *((s.milestone, s.reached, s.stalled) for s in r.funnel)]
    height = 10 + len(steps) * (row + gap)
    plot_w = width - left - 230
    out: list[str] = []
    if r.runs and r.funnel:
        prev: tuple[float, float] | None = None
        for i, (name, reached, stalled) in enumerate(steps):
            w = max(plot_w * reached / r.runs, 1.0)
            x, y = left + (plot_w - w) / 2, 6 + i * (row + gap)
            if prev is not None:  # the narrowing between two steps: where runs were lost
                px, pw = prev
                out.append(
                    f'<path class="link" d="M{px:.1f},{y - gap:.1f} L{px + pw:.1f},{y - gap:.1f} '
                    f'L{x + w:.1f},{y:.1f} L{x:.1f},{y:.1f} Z" fill="#d8dde6"><title>{stalled:,} runs '
                    f"stalled before {_e(name)}</title></path>"
                )
            share = f"{100 * reached / r.runs:.0f}%"
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" fill="#4363d8">'
                f"<title>{_e(name)}: {reached:,} runs ({share})</title></rect>"
                f'<text x="{left - 8}" y="{y + row / 2 + 4}" text-anchor="end">{_e(_clip(name, 24))}</text>'
                f'<text x="{left + plot_w + 8}" y="{y + row / 2 + 4}">{reached:,} runs ({share})'
                + (f", {stalled:,} stalled before" if i else "")
                + "</text>"
            )
            prev = (x, w)
    else:
        out.append(_empty(width, height, "no milestones recorded"))
    chart = _svg("funnel-chart", "Progress funnel across milestones", width, height, out)
    rows = "".join(
        f'<tr><td>{_e(s.milestone)}</td><td class="n">{s.reached:,}</td><td class="n">{s.stalled:,}</td>'
        f"<td>{_pairs(s.last_tools)}</td><td>{_pairs(s.last_milestones)}</td></tr>"
        for s in r.funnel
    )
    table = (
        '<table><tr><th>milestone</th><th class="n">reached</th><th class="n">stalled before it</th>'
        f"<th>their last tool call</th><th>their last milestone</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return (
        '<section id="funnel"><h2>Progress funnel</h2><p class="muted">Runs that reached each milestone; a '
        "run stalls before the first milestone it missed. "
        f"{r.through:,} runs reached every milestone.</p>{chart}{table}</section>"
    )


def _tools(r: Report) -> str:
    tools = [t for t in r.tools if t.calls][:20]
    width, left, row, gap = 960, 170, 22, 8
    height = 10 + max(len(tools), 1) * (row + gap)
    plot_w = width - left - 90
    peak = max((t.calls for t in tools), default=0)
    actions: list[str] = [a for a in ACTIONS if any(t.decisions.get(a) for t in tools)]
    actions += sorted({a for t in tools for a, n in t.decisions.items() if n and a not in ACTIONS})
    out: list[str] = []
    for i, t in enumerate(tools):
        x, y = float(left), float(6 + i * (row + gap))
        for a in actions:
            n = t.decisions.get(a, 0)
            if not n:
                continue
            w = plot_w * n / peak
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" '
                f'fill="{_ACTION_COLOURS.get(a, _OTHER)}"><title>{_e(t.tool)}: {_e(a)} {n:,} of '
                f"{t.calls:,} calls</title></rect>"
            )
            x += w
        out.append(
            f'<text x="{left - 8}" y="{y + row / 2 + 4}" text-anchor="end">{_e(_clip(t.tool, 24))}</text>'
            f'<text x="{x + 6:.1f}" y="{y + row / 2 + 4}">{t.calls:,}</text>'
        )
    if not tools:
        out.append(_empty(width, height, "no tool calls recorded"))
    chart = _svg("tools-chart", "Decisions by tool", width, height, out)
    legend = _legend((a, _ACTION_COLOURS.get(a, _OTHER)) for a in actions)
    rows = "".join(
        f'<tr><td><code>{_e(t.tool)}</code></td><td class="n">{t.calls:,}</td>'
        + "".join(f'<td class="n">{t.decisions.get(a, 0):,}</td>' for a in ACTIONS)
        + f'<td class="n">{sum(n for a, n in t.results.items() if a != "allow"):,}</td>'
        f'<td class="n">{t.errors:,}</td><td>{_pairs(t.human.items())}</td>'
        f"<td>{_pairs(list(t.findings.items())[:4])}</td></tr>"
        for t in r.tools
    )
    head = "".join(f'<th class="n">{a}</th>' for a in ACTIONS)
    table = (
        f'<table><tr><th>tool</th><th class="n">calls</th>{head}<th class="n">results flagged</th>'
        f'<th class="n">errors</th><th>people</th><th>findings</th></tr>{rows}</table>'
        if rows
        else ""
    )
    return (
        '<section id="tools"><h2>Decisions by tool</h2><p class="muted">What headway decided on each '
        f"proposed call, by action.</p>{chart}{legend}{table}</section>"
    )


# ---- drawing ----------------------------------------------------------------------------------------------


def _svg(id_: str, title: str, width: int, height: int, body: Sequence[str]) -> str:
    return (
        f'<svg id="{id_}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="{id_}-title">'
        f'<title id="{id_}-title">{_e(title)}</title>' + "".join(body) + "</svg>"
    )


def _axis(left: int, top: int, right: int, plot_h: int, peak: int) -> str:
    lines = []
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        lines.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e1e4ea"/>')
        if peak:
            lines.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac):,}</text>'
            )
    return "".join(lines)


def _empty(width: int, height: int, text: str) -> str:
    return f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">{_e(text)}</text>'


def _legend(items: Iterable[tuple[str, str]]) -> str:
    lis = "".join(f'<li><span class="sw" style="background:{c}"></span>{_e(name)}</li>' for name, c in items)
    return f'<ul class="legend">{lis}</ul>' if lis else ""


def _pairs(items: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{_e(name)} ({n:,})" for name, n in items) or '<span class="muted">-</span>'


def _kind_colour(kind: str) -> str:
    return _KIND_COLOURS.get(kind, _OTHER)


def _kind_index(kind: str) -> int:
    return list(_KIND_COLOURS).index(kind) if kind in _KIND_COLOURS else len(_KIND_COLOURS)


def _bucket_label(ts: float, size: int) -> str:
    fmt = "%m-%d %H:00" if size < 86_400 else ("%Y-%m" if size >= 30 * 86_400 else "%Y-%m-%d")
    return time.strftime(fmt, time.gmtime(ts))


def _day(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
