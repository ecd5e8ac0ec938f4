"""The self-contained HTML map page (no CDN, no tile server): SVG over an embedded PNG base.

Written for this project (no third-party code). ``__DATA__`` is replaced by the page's JSON:
{"title", "width", "height", "dates", "images": [png data URI], "bases": {date|"": image index},
"layers": {name: [{"d", "props"}]}, "colors": {status: css colour}}. Layer groups get ids
``layer-<name>`` and every shape the class ``site status-<status>`` so a browser test can count
them.
"""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
html,body{margin:0;height:100%;font:13px/1.35 system-ui,sans-serif;background:#1e1f22;color:#eee}
#app{display:flex;height:100%}
#side{width:270px;padding:10px 12px;overflow:auto;background:#2b2d31;box-sizing:border-box}
#side h1{font-size:15px;margin:0 0 8px}
#side label{display:block;margin:2px 0;cursor:pointer}
#map{flex:1;position:relative;overflow:hidden;background:#111;cursor:grab}
#map svg{width:100%;height:100%;display:block}
.swatch{display:inline-block;width:11px;height:11px;margin-right:5px;border:1px solid #000;
 vertical-align:-1px}
#info{margin-top:10px;padding:6px;background:#1e1f22;min-height:60px;white-space:pre-wrap;
 font-family:ui-monospace,monospace;font-size:11px}
path.site{fill-opacity:.35;stroke-width:1.5;vector-effect:non-scaling-stroke}
path.site:hover{fill-opacity:.7}
path.zone{fill-opacity:.12;stroke-width:1.5;stroke-dasharray:5 3;vector-effect:non-scaling-stroke}
.hidden{display:none}
</style></head>
<body><div id="app">
<div id="side"><h1 id="title"></h1>
<div id="date-box"><b>Date</b> <span id="date-label"></span><br>
<input id="date-slider" type="range" min="0" value="0" step="1" style="width:100%"></div>
<div><b>Layers</b><div id="layer-toggles"></div></div>
<div><b>Status</b><div id="legend"></div></div>
<div id="info">click a site</div></div>
<div id="map"><svg id="svg" xmlns="http://www.w3.org/2000/svg"><g id="view"></g></svg></div>
</div>
<script>
"use strict";
const DATA = __DATA__;
const NS = "http://www.w3.org/2000/svg";
const svg = document.getElementById("svg"), view = document.getElementById("view");
let vb = [0, 0, DATA.width, DATA.height];
function setViewBox(){ svg.setAttribute("viewBox", vb.join(" ")); }
document.getElementById("title").textContent = DATA.title;
const base = document.createElementNS(NS, "image");
base.setAttribute("id", "base-image");
base.setAttribute("width", DATA.width); base.setAttribute("height", DATA.height);
base.setAttribute("preserveAspectRatio", "none");
const baseGroup = document.createElementNS(NS, "g"); baseGroup.id = "layer-base";
baseGroup.appendChild(base); view.appendChild(baseGroup);
const groups = {base: baseGroup};
const ZONE_COLORS = {concessions: "#4da3ff", protected: "#3ddc84"};
for (const [name, shapes] of Object.entries(DATA.layers)) {
  const g = document.createElementNS(NS, "g"); g.id = "layer-" + name; groups[name] = g;
  for (const s of shapes) {
    const p = document.createElementNS(NS, "path");
    p.setAttribute("d", s.d); p.setAttribute("fill-rule", "evenodd");
    const st = s.props.status || "detected";
    if (name === "sites") {
      p.setAttribute("class", "site status-" + st);
      const c = DATA.colors[st] || "#ff0";
      p.setAttribute("fill", c); p.setAttribute("stroke", c);
      p.dataset.date = s.props.date || "";
    } else {
      p.setAttribute("class", "zone zone-" + name);
      p.setAttribute("fill", ZONE_COLORS[name]); p.setAttribute("stroke", ZONE_COLORS[name]);
    }
    p.addEventListener("click", ev => { ev.stopPropagation();
      document.getElementById("info").textContent = JSON.stringify(s.props, null, 1); });
    g.appendChild(p);
  }
  view.appendChild(g);
}
// Layer toggles, base first.
const toggles = document.getElementById("layer-toggles");
for (const name of Object.keys(groups)) {
  const lab = document.createElement("label"), cb = document.createElement("input");
  cb.type = "checkbox"; cb.checked = true; cb.id = "toggle-" + name;
  cb.addEventListener("change", () => groups[name].classList.toggle("hidden", !cb.checked));
  lab.appendChild(cb); lab.append(" " + name); toggles.appendChild(lab);
}
// Date slider: shows one date's sites and that date's base image.
const slider = document.getElementById("date-slider");
const dates = DATA.dates.length ? DATA.dates : [""];
slider.max = dates.length - 1; slider.value = dates.length - 1;
if (dates.length < 2) slider.disabled = true;
function showDate(i) {
  const d = dates[i];
  document.getElementById("date-label").textContent = d || "(undated)";
  const k = d in DATA.bases ? DATA.bases[d] : ("" in DATA.bases ? DATA.bases[""] : 0);
  const img = DATA.images[k] || "";
  if (img) base.setAttribute("href", img); else base.removeAttribute("href");
  const counts = {};
  for (const p of groups.sites ? groups.sites.children : []) {
    const on = !d || p.dataset.date === d || p.dataset.date === "";
    p.classList.toggle("hidden", !on);
    if (on) { const st = p.getAttribute("class").split("status-")[1];
      counts[st] = (counts[st] || 0) + 1; }
  }
  const legend = document.getElementById("legend"); legend.textContent = "";
  for (const [st, c] of Object.entries(DATA.colors)) {
    if (st === "detected" && !counts[st]) continue;
    const row = document.createElement("div"); row.className = "legend-row";
    row.dataset.status = st; row.dataset.count = counts[st] || 0;
    row.innerHTML = '<span class="swatch" style="background:' + c + '"></span>' + st +
      " (" + (counts[st] || 0) + ")";
    legend.appendChild(row);
  }
  document.body.dataset.date = d; document.body.dataset.visibleSites =
    Object.values(counts).reduce((a, b) => a + b, 0);
}
slider.addEventListener("input", () => showDate(+slider.value));
showDate(+slider.value);
// Pan (drag) and zoom (wheel) through the viewBox.
const map = document.getElementById("map"); let drag = null;
map.addEventListener("wheel", ev => { ev.preventDefault();
  const r = svg.getBoundingClientRect(), k = ev.deltaY > 0 ? 1.2 : 1 / 1.2;
  const s = Math.max(vb[2] / r.width, vb[3] / r.height);
  const mx = vb[0] + (ev.clientX - r.left) * s, my = vb[1] + (ev.clientY - r.top) * s;
  vb = [mx - (mx - vb[0]) * k, my - (my - vb[1]) * k, vb[2] * k, vb[3] * k]; setViewBox(); },
  {passive: false});
map.addEventListener("mousedown", ev => { drag = [ev.clientX, ev.clientY]; });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", ev => { if (!drag) return;
  const r = svg.getBoundingClientRect(), s = Math.max(vb[2] / r.width, vb[3] / r.height);
  vb[0] -= (ev.clientX - drag[0]) * s; vb[1] -= (ev.clientY - drag[1]) * s;
  drag = [ev.clientX, ev.clientY]; setViewBox(); });
// Start framed on the sites when they cover a small part of the scene.
if (groups.sites && groups.sites.children.length) {
  const bb = groups.sites.getBBox(), pad = Math.max(bb.width, bb.height) * 0.4 + 20;
  const w = bb.width + 2 * pad, h = bb.height + 2 * pad;
  if (w < DATA.width * 0.8 && h < DATA.height * 0.8) vb = [bb.x - pad, bb.y - pad, w, h];
}
setViewBox();
document.body.dataset.ready = "1";
</script></body></html>
"""
