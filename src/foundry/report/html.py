"""One self-contained HTML page: tables, the PNG figures and interactive 3-D views, offline.

Everything is inside the file: plotly.js (from the plotly package), the figures as base64 PNGs,
and the clouds as JSON, so the page opens in a browser with no network. Each 3-D view shows one
cloud in several side-by-side scenes (one per colouring, see `foundry.report.views`) whose cameras
move together; a menu switches between clouds. Once plotly has drawn every view, the page writes
`<p id="foundry-render-status" data-drawn=K data-expected=N>` (K views whose WebGL scenes exist),
which a headless browser can read back (tests/test_report_html.py).

    blocks = [{"markdown": text}, {"view": cloud_views(...), "caption": "..."},
              {"image": "figures/latency.png", "caption": "..."}]
    write_html_report("report.html", "Foundry demo report", blocks)
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np

from ..io import atomic_write
from .views import LABEL

_STATUS_JS = """
(function () {
  function status(drawn, expected, error) {
    var p = document.getElementById('foundry-render-status');
    p.setAttribute('data-drawn', drawn);
    p.setAttribute('data-expected', expected);
    p.textContent = drawn + ' of ' + expected + ' 3-D views drawn' + (error ? ' (' + error + ')' : '');
  }
  function linkCameras(gd, scenes) {  // rotating or zooming one scene moves the others alike
    var busy = false;
    gd.on('plotly_relayout', function (ev) {
      if (busy) return;
      var key = Object.keys(ev).filter(function (k) { return /^scene\\d*\\.camera$/.test(k); })[0];
      if (!key) return;
      var upd = {};
      scenes.forEach(function (s) { if (s + '.camera' !== key) upd[s + '.camera'] = ev[key]; });
      busy = true;
      Plotly.relayout(gd, upd).then(function () { busy = false; }, function () { busy = false; });
    });
  }
  function show(gd, spec, i) {
    var c = spec.clouds[i], n = spec.scenes.length, idx = [], upd = {x: [], y: [], z: [], 'marker.color': []};
    for (var t = 0; t < n; t++) {
      idx.push(t); upd.x.push(c.x); upd.y.push(c.y); upd.z.push(c.z); upd['marker.color'].push(c.colors[t]);
    }
    return Plotly.restyle(gd, upd, idx);
  }
  var specs = JSON.parse(document.getElementById('foundry-views').textContent);
  if (typeof Plotly === 'undefined') { status(0, specs.length, 'plotly.js missing'); return; }
  var jobs = specs.map(function (spec) {
    var gd = document.getElementById(spec.div);
    return Plotly.newPlot(gd, spec.figure.data, spec.figure.layout, {displaylogo: false, responsive: true})
      .then(function () { return show(gd, spec, 0); })
      .then(function () {
        var pick = document.getElementById(spec.div + '-pick');
        if (pick) pick.addEventListener('change', function () { show(gd, spec, +pick.value); });
        linkCameras(gd, spec.scenes);
        return gd;
      });
  });
  Promise.all(jobs).then(function (gds) {
    var drawn = 0;
    gds.forEach(function (gd, i) {
      var ok = specs[i].scenes.length > 0 && gd.querySelectorAll('canvas').length > 0;
      specs[i].scenes.forEach(function (s) {
        var scene = gd._fullLayout[s] && gd._fullLayout[s]._scene;
        if (!(scene && scene.glplot)) ok = false;
      });
      if (ok) drawn++;
    });
    status(drawn, specs.length, '');
  }).catch(function (e) { status(0, specs.length, String(e)); });
})();
"""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; padding: 0 16px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 3px; }
figure { margin: 12px 0 24px; }
figcaption { font-size: 13px; color: #555; margin-bottom: 6px; }
img { max-width: 100%; }
.view { width: 100%; height: 440px; }
"""


def _palette(n: int) -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return ["#%02x%02x%02x" % tuple(int(255 * c) for c in cmap(i % 20)[:3]) for i in range(max(1, n))]


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_html(text: str) -> str:
    """The Markdown this project writes (headings, pipe tables, paragraphs) as HTML."""
    out, para, rows = [], [], []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if rows:
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows
                     if not re.fullmatch(r"\|?[\s:|-]+\|?", r.strip())]
            head, body = cells[0], cells[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</table>")
            rows.clear()

    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|"):
            if para:
                flush()
            rows.append(s)
            continue
        if rows:
            flush()
        if not s:
            flush()
        elif s.startswith("#"):
            flush()
            level = min(6, len(s) - len(s.lstrip("#")) + 1)
            out.append(f"<h{level}>{_inline(s.lstrip('#').strip())}</h{level}>")
        elif not s.startswith("!["):  # Markdown image links: the images are embedded separately
            para.append(s)
    flush()
    return "\n".join(out)


def _round(a) -> list:
    return np.round(np.asarray(a, dtype=np.float64), 4).tolist()


def view_spec(view: dict, div: str) -> dict:
    """A plotly figure (first cloud) plus every cloud's coordinates and colours, for the page's JS."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    panels = view["panels"]
    n = len(panels)
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n], subplot_titles=[p["name"] for p in panels],
                        horizontal_spacing=0.01)
    scenes = ["scene" if i == 0 else f"scene{i + 1}" for i in range(n)]
    for i, p in enumerate(panels):
        vals = np.asarray(p["values"])
        marker = {"size": 2.2}
        if p["kind"] == LABEL:
            k = int(vals.max()) + 1
            cols = _palette(k)
            marker.update(colorscale=[[f, c] for j, c in enumerate(cols) for f in (j / k, (j + 1) / k)],
                          cmin=-0.5, cmax=k - 0.5)
        else:
            dom = fig.layout[scenes[i]].domain.x
            marker.update(colorscale="Viridis", cmin=0.0, cmax=float(vals.max()) or 1.0, showscale=True,
                          colorbar={"x": dom[1], "len": 0.75, "thickness": 10, "tickfont": {"size": 9}})
        fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="markers", marker=marker, hoverinfo="skip",
                                   showlegend=False), row=1, col=i + 1)
        axis = {"visible": False}
        fig.layout[scenes[i]].update(xaxis=axis, yaxis=axis, zaxis=axis, aspectmode="data",
                                     camera={"up": {"x": 0, "y": 0, "z": 1}, "eye": {"x": 1.4, "y": -1.4, "z": 0.9}})
    fig.update_layout(margin={"l": 0, "r": 0, "t": 30, "b": 0}, paper_bgcolor="white")
    clouds = []
    for b, c in enumerate(view["clouds"]):
        pts = np.asarray(c["points"])  # z up, as in the PNG figures
        clouds.append({"title": c["title"], "x": _round(pts[:, 0]), "y": _round(pts[:, 1]), "z": _round(pts[:, 2]),
                       "colors": [_round(p["values"][b]) for p in panels]})
    return {"div": div, "figure": json.loads(fig.to_json()), "scenes": scenes, "clouds": clouds}


def _view_block(view: dict, caption: str, div: str) -> tuple[str, dict]:
    spec = view_spec(view, div)
    options = "".join(f'<option value="{i}">{html.escape(c["title"])}</option>' for i, c in enumerate(spec["clouds"]))
    pick = f'<label>cloud <select id="{div}-pick">{options}</select></label>' if len(spec["clouds"]) > 1 else ""
    body = (f'<figure><figcaption>{_inline(caption)} Drag to rotate, scroll to zoom; the scenes move together. '
            f'{pick}</figcaption><div id="{div}" class="view"></div></figure>')
    return body, spec


def _image_block(path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><figcaption>{_inline(caption)}</figcaption>'
            f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"></figure>')


def html_report(title: str, blocks: list[dict]) -> str:
    from plotly.offline import get_plotlyjs

    parts, specs = [], []
    for block in blocks:
        if "markdown" in block:
            parts.append(markdown_html(block["markdown"]))
        elif "view" in block:
            if block["view"]["panels"] and block["view"]["clouds"]:
                body, spec = _view_block(block["view"], block.get("caption", ""), f"view{len(specs)}")
                parts.append(body)
                specs.append(spec)
        elif "image" in block and Path(block["image"]).exists():
            parts.append(_image_block(block["image"], block.get("caption", "")))
    views_json = json.dumps(specs, separators=(",", ":")).replace("</", "<\\/")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p id="foundry-render-status" data-drawn="0" data-expected="%d" style="color:#888;font-size:12px">'
        'drawing the 3-D views...</p>' % len(specs),
        *parts,
        f'<script id="foundry-views" type="application/json">{views_json}</script>',
        f"<script>{_STATUS_JS}</script>", "</body></html>"])


def write_html_report(path, title: str, blocks: list[dict]) -> Path:
    """Write the page atomically; returns its path."""
    text = html_report(title, blocks)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return Path(path)
