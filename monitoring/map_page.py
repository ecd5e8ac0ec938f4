"""The self-contained HTML map: Leaflet (vendored, ``monitoring/vendor/leaflet``) inlined with its
CSS and icons, the page's data as JSON, and the small app below. One file, no network.

Data (``render(data)``): ``title``; ``images`` [{date, label, url (PNG data URI), bounds
[[s, w], [n, e]]}], each date's picture warped to Web Mercator so Leaflet places it exactly;
``dates``; ``sites`` and ``alerts`` (GeoJSON FeatureCollections, WGS84; alerts carry ``before``
and ``after`` chip data URIs); ``zones`` {concessions, protected}; ``colors`` {status: css};
``view`` [[s, w], [n, e]].

The page: pan/zoom, a scale bar, the coordinates under the cursor, a layer control (each date's
picture as a base layer; sites by status, alerts, concessions and protected areas as overlays), a
date picker that shows one date's sites with a legend of counts, popups with the facts, the
review state and (alerts) a before/after view with a slider; ``#alert=ID`` or ``#site=ID`` in
the URL opens that feature. For tests: ``body[data-ready]``, ``data-visible-sites``, legend rows
``data-status``/``data-count``; paths have classes ``site status-<s>`` and ``alert``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent / "vendor" / "leaflet"

STYLE = r"""
html,body{margin:0;height:100%;font:13px/1.35 system-ui,sans-serif}
#map{position:absolute;inset:0;background:#1e1f22}
.asm-panel{background:#fff;padding:6px 8px;border-radius:4px;box-shadow:0 1px 4px #0006;
 max-width:280px}
.asm-panel h1{font-size:14px;margin:0 0 4px}
.legend-row{white-space:nowrap}
.swatch{display:inline-block;width:11px;height:11px;margin-right:5px;border:1px solid #000;
 vertical-align:-1px}
#cursor-coords{font:12px ui-monospace,monospace}
.base-image{image-rendering:pixelated}
.asm-popup table{border-collapse:collapse}
.asm-popup th{text-align:left;padding-right:8px;font-weight:600;vertical-align:top}
.compare{position:relative;width:240px;height:240px;margin:6px 0;background:#000}
.compare img{position:absolute;left:0;top:0;width:240px;height:240px;image-rendering:pixelated}
.compare .after-wrap{position:absolute;left:0;top:0;height:240px;overflow:hidden;width:50%}
.compare-slider{width:240px}
.chip-labels{display:flex;justify-content:space-between;width:240px;font-size:11px}
.review-confirmed{color:#0a7d22;font-weight:600}.review-rejected{color:#b00020;font-weight:600}
.review-corrected{color:#a15c00;font-weight:600}
"""

APP = r"""
"use strict";
const DATA = __DATA__;
const esc = s => String(s ?? "").replace(/[&<>"']/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
const map = L.map("map", {zoomSnap: 0.25, attributionControl: false, fadeAnimation: false});
document.title = DATA.title;
// Panes, bottom to top: pictures, zones, sites, alerts (so the alerts stay clickable).
for (const [name, z] of [["zones", 380], ["alerts", 450]]) map.createPane(name).style.zIndex = z;
// Base layers: each date's picture (or none).
const bases = {}, baseByDate = {};
for (const im of DATA.images) {
  const layer = L.imageOverlay(im.url, im.bounds, {className: "base-image"});
  bases[im.label] = layer; baseByDate[im.date] = layer;
}
bases["no picture"] = L.layerGroup();
// Sites: one overlay per status; the date picker chooses which date's observations are drawn.
const present = new Set(DATA.sites.features.map(f => f.properties.status || "detected"));
const statuses = Object.keys(DATA.colors).filter(st => present.has(st));
const siteGroups = {}, siteLayers = [];
for (const st of statuses) siteGroups[st] = L.layerGroup();
function rows(props, keys) {
  const shown = k => props[k] !== null && props[k] !== undefined && props[k] !== "";
  return "<table>" + keys.filter(shown)
    .map(k => `<tr><th>${esc(k.replaceAll("_", " "))}</th><td>${esc(props[k])}</td></tr>`)
    .join("") + "</table>";
}
function review(props) {
  if (!props.review) return '<p class="review">review: <i>not reviewed</i></p>';
  return `<p class="review">review: <span class="review-${esc(props.review)}">${esc(props.review)}`
    + `</span>${props.review_reason ? " (" + esc(props.review_reason) + ")" : ""}</p>`;
}
const SITE_KEYS = ["site_id", "status", "date", "area_m2", "previous_area_m2", "compliance",
  "concessions", "protected_areas", "score", "confidence", "last_clear", "scene_id",
  "model_version"];
const byId = {sites: {}, alerts: {}};
for (const f of DATA.sites.features) {
  const p = f.properties, st = p.status || "detected";
  const color = DATA.colors[st] || "#ff0";
  const layer = L.geoJSON(f, {style: {color, weight: 2, fillOpacity: 0.35,
    className: `site status-${st}`}});
  layer.bindPopup(`<div class="asm-popup site-popup"><b>Site ${esc(p.site_id ?? "")}</b>`
    + rows(p, SITE_KEYS) + review(p) + "</div>");
  const entry = {layer, status: st, date: p.date || ""};
  siteLayers.push(entry);
  if (p.site_id) byId.sites[p.site_id] = entry;  // the latest date's observation wins
}
// Alerts: outlined polygons plus a marker at each (visible at any zoom).
const ALERT_KEYS = ["alert_id", "site_id", "kind", "status", "state", "confidence", "compliance",
  "date", "before_date", "area_m2", "concessions", "protected_areas", "acquired", "raised_at",
  "acquisition_to_alert_s", "found_to_alert_s", "model_version", "evidence"];
function compare(p) {
  if (!p.after) return "";
  if (!p.before) return `<div class="chips"><img class="after-only" src="${p.after}" width="240">`
    + `<div class="chip-labels"><span>after ${esc(p.date)}</span></div></div>`;
  return `<div class="compare"><img class="before" src="${p.before}" alt="before">`
    + `<div class="after-wrap"><img class="after" src="${p.after}" alt="after"></div></div>`
    + `<input type="range" class="compare-slider" min="0" max="100" value="50">`
    + `<div class="chip-labels"><span>before ${esc(p.before_date ?? "")}</span>`
    + `<span>after ${esc(p.date ?? "")}</span></div>`;
}
const alertGroup = L.layerGroup();
for (const f of DATA.alerts.features) {
  const p = f.properties;
  const html = `<div class="asm-popup alert-popup" data-alert="${esc(p.alert_id)}">`
    + `<b>Alert: ${esc(p.kind || p.status)} site ${esc(p.site_id)}</b>` + compare(p)
    + rows(p, ALERT_KEYS) + review(p) + "</div>";
  const shape = L.geoJSON(f, {pane: "alerts", style: {color: "#ff00ff", weight: 3,
    dashArray: "6 4", fillOpacity: 0.1, className: `alert state-${p.state || "raised"}`}});
  const c = L.geoJSON(f).getBounds().getCenter();
  const marker = L.circleMarker(c, {pane: "alerts", radius: 7, color: "#ff00ff", weight: 2,
    fillOpacity: 0.6, className: "alert-marker"});
  for (const l of [shape, marker]) { l.bindPopup(html, {maxWidth: 320}); alertGroup.addLayer(l); }
  byId.alerts[p.alert_id] = {layer: marker, date: ""};
}
map.on("popupopen", ev => {
  const root = ev.popup.getElement(), slider = root.querySelector(".compare-slider");
  if (slider) slider.addEventListener("input", () =>
    root.querySelector(".after-wrap").style.width = slider.value + "%");
});
// Zones.
const ZONE_STYLE = {concessions: {color: "#4da3ff", label: "concessions"},
  protected: {color: "#3ddc84", label: "protected areas"}};
const overlays = {};
for (const st of statuses) overlays[`sites: ${st}`] = siteGroups[st];
overlays["alerts"] = alertGroup;
for (const [name, fc] of Object.entries(DATA.zones)) {
  if (!fc || !fc.features.length) continue;
  const s = ZONE_STYLE[name];
  overlays[s.label] = L.geoJSON(fc, {pane: "zones", style: {color: s.color, weight: 2,
    dashArray: "5 3", fillOpacity: 0.08, className: `zone zone-${name}`},
    onEachFeature: (f, l) => l.bindPopup(`<div class="asm-popup"><b>${esc(s.label)}</b>`
      + rows(f.properties, Object.keys(f.properties)) + "</div>")});
}
for (const layer of Object.values(overlays)) layer.addTo(map);
L.control.layers(bases, overlays, {collapsed: false, position: "topright"}).addTo(map);
L.control.scale({imperial: false, maxWidth: 160}).addTo(map);
// Coordinates under the cursor.
const Coords = L.Control.extend({onAdd() {
  const div = L.DomUtil.create("div", "asm-panel"); div.id = "cursor-coords";
  div.textContent = "lat, lon"; return div; }});
new Coords({position: "bottomright"}).addTo(map);
map.on("mousemove", ev => { document.getElementById("cursor-coords").textContent =
  `${ev.latlng.lat.toFixed(5)}, ${ev.latlng.lng.toFixed(5)}`; });
// Title, date picker and legend.
const dates = DATA.dates.length ? DATA.dates : [""];
const Panel = L.Control.extend({onAdd() {
  const div = L.DomUtil.create("div", "asm-panel"); div.id = "panel";
  div.innerHTML = `<h1>${esc(DATA.title)}</h1><label>date <select id="date-select">`
    + dates.map(d => `<option value="${esc(d)}">${esc(d || "(undated)")}</option>`).join("")
    + `</select></label><div id="legend"></div>`;
  L.DomEvent.disableClickPropagation(div); return div; }});
new Panel({position: "topleft"}).addTo(map);
const select = document.getElementById("date-select");
function showDate(d) {
  select.value = d;
  const counts = {};
  for (const g of Object.values(siteGroups)) g.clearLayers();
  for (const s of siteLayers) {
    if (d && s.date && s.date !== d) continue;
    siteGroups[s.status].addLayer(s.layer); counts[s.status] = (counts[s.status] || 0) + 1;
  }
  const legend = document.getElementById("legend"); legend.textContent = "";
  for (const st of statuses) {
    const row = document.createElement("div"); row.className = "legend-row";
    row.dataset.status = st; row.dataset.count = counts[st] || 0;
    row.innerHTML = `<span class="swatch" style="background:${DATA.colors[st]}"></span>`
      + `${st} (${counts[st] || 0})`;
    legend.appendChild(row);
  }
  document.body.dataset.date = d;
  document.body.dataset.visibleSites = Object.values(counts).reduce((a, b) => a + b, 0);
}
select.addEventListener("change", () => {
  showDate(select.value);
  const base = baseByDate[select.value];
  if (base && !map.hasLayer(base)) {
    for (const l of Object.values(bases)) map.removeLayer(l);
    base.addTo(map);
  }
});
map.on("baselayerchange", ev => {
  const d = Object.keys(baseByDate).find(k => baseByDate[k] === ev.layer);
  if (d && dates.includes(d)) showDate(d);
});
const last = dates[dates.length - 1];
(baseByDate[last] || baseByDate[""] || Object.values(bases)[0]).addTo(map);
showDate(last);
map.fitBounds(DATA.view);
// Deep links: #alert=ID or #site=ID opens that feature.
function openFromHash() {
  const m = location.hash.match(/^#(alert|site)=(.+)$/);
  if (!m) return;
  const entry = byId[m[1] + "s"][decodeURIComponent(m[2])];
  if (!entry) return;
  if (entry.date && entry.date !== select.value) showDate(entry.date);
  const layer = entry.layer;
  const b = layer.getBounds ? layer.getBounds() : L.latLngBounds([layer.getLatLng()]);
  map.fitBounds(b.pad(3), {maxZoom: 15, animate: false});
  layer.openPopup();
}
window.addEventListener("hashchange", openFromHash);
openFromHash();
window.asmMap = map;
document.body.dataset.ready = "1";
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<!-- Leaflet 1.9.4 (BSD-2-Clause, (c) 2010-2023 Volodymyr Agafonkin, (c) 2010-2011 CloudMade) -->
<style>__LEAFLET_CSS__</style>
<style>__STYLE__</style>
<script>__LEAFLET_JS__</script>
</head>
<body><div id="map"></div>
<script>__APP__</script>
</body></html>
"""


@cache
def _leaflet() -> tuple[str, str]:
    """Leaflet's JS, and its CSS with the images it names inlined as data URIs."""
    js = (VENDOR / "leaflet.js").read_text(encoding="utf-8")
    css = (VENDOR / "leaflet.css").read_text(encoding="utf-8")

    def inline(match: re.Match) -> str:
        data = base64.b64encode((VENDOR / match.group(1)).read_bytes()).decode()
        return f"url(data:image/png;base64,{data})"

    return js, re.sub(r"url\((images/[\w.-]+\.png)\)", inline, css)


def render(data: dict[str, Any]) -> str:
    js, css = _leaflet()
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    return (
        TEMPLATE.replace("__TITLE__", html.escape(str(data.get("title", "ASM map"))))
        .replace("__LEAFLET_CSS__", css)
        .replace("__STYLE__", STYLE)
        .replace("__APP__", APP.replace("__DATA__", payload))
        .replace("__LEAFLET_JS__", js)
    )
