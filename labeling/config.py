"""The Label Studio labelling interface and the instructions shown to labellers.

Two views of every chip, each with polygon and brush tools for ``pit`` and ``pond``: the true
colour picture (``image``) and a false-colour SWIR-NIR-red picture (``false_color``) in which water
is dark and bare soil bright. Both pictures have the chip's pixel size, so a region drawn on either
lands on the same pixels.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from imagery.coco import CLASS_NAMES

COLORS = {"pit": "#e6550d", "pond": "#3182bd"}
# (image tag, value field, polygon control, brush control)
VIEWS = (
    ("image", "image", "polygon", "brush"),
    ("false_color", "false_color", "polygon_fc", "brush_fc"),
)
PREDICTION_FROM_NAME, PREDICTION_TO_NAME = "polygon", "image"

INSTRUCTIONS = """\
<h3>Artisanal and small-scale gold mining: pits and ponds</h3>
<p>Each task is one Sentinel-2 chip (10 m pixels), shown twice: true colour on top, false colour
(SWIR-NIR-red: B12, B08, B04) below. In false colour, open water is dark blue or black and bare,
freshly dug soil is bright pink or white; vegetation is green.</p>
<ul>
<li><b>pit</b>: a dry excavation or bare, dug-up ground of a mining site (bright in false colour,
often in clusters along rivers).</li>
<li><b>pond</b>: a water-filled pit or settling pond of a mining site (dark in false colour, often
brown or green in true colour, in clusters next to pits).</li>
</ul>
<p>Outline each site separately, one region per pit or pond, following its edge as tightly as the
pixels allow. Use the polygon tool for clean outlines and the brush for irregular shapes; either
view may be used. Do not label rivers, natural lakes, roads, fields or towns. If clouds or missing
data hide the ground, press <i>Skip</i>. If the chip shows no mining, submit it without regions: it
is kept as a negative example.</p>
<p>Pre-annotations from a model are suggestions: fix their outlines, delete false ones and add the
sites they missed.</p>
"""


def _labels(classes: tuple[str, ...]) -> str:
    return "".join(f'<Label value="{c}" background="{COLORS.get(c, "#31a354")}"/>' for c in classes)


def label_config(
    true_color: str = "B04 B03 B02", false_color: str = "B12 B08 B04", classes: tuple = ()
) -> str:
    """The project's XML labelling config (polygon + brush tools on both views)."""
    classes = tuple(classes) or tuple(CLASS_NAMES)
    headers = {
        "image": f"True colour ({true_color})",
        "false_color": f"False colour ({false_color}): water dark, bare soil bright",
    }
    parts = ["<View>"]
    for image, field, polygon, brush in VIEWS:
        parts += [
            f'<Header value={quoteattr(headers[image])} size="5"/>',
            f'<Image name="{image}" value="${field}" zoom="true" zoomControl="true"/>',
            f'<PolygonLabels name="{polygon}" toName="{image}" strokeWidth="2" '
            f'pointSize="small" opacity="0.35">{_labels(classes)}</PolygonLabels>',
            f'<BrushLabels name="{brush}" toName="{image}">{_labels(classes)}</BrushLabels>',
        ]
    parts.append("</View>")
    return "\n".join(parts)


# ---- alert review (asmspotter label alerts | reviews | export --reviews) ----
REVIEW_TITLE = "ASM alert review"
DECISIONS = ("confirm", "reject", "correct")
REJECT_REASONS = ("river", "farm", "road", "cloud", "other")

REVIEW_INSTRUCTIONS = """\
<h3>Review an early-warning alert</h3>
<p>Each task is one alert: a site the model found on a new Sentinel-2 acquisition, outside every
concession or inside a protected area. Left: the last clear view of the place before; right: the
acquisition that raised the alert, with the model's outline.</p>
<ul>
<li><b>confirm</b>: it is mining and the outline is right (leave the outline as it is).</li>
<li><b>reject</b>: it is not mining; say why (river, farm, road, cloud, other). The chip becomes a
hard negative for training.</li>
<li><b>correct</b>: it is mining but the outline is wrong: edit or redraw it (pit or pond).</li>
</ul>
"""


def review_config(classes: tuple = ()) -> str:
    """The review project's XML: before and after pictures, the site outline (editable),
    the decision and, for a rejection, the reason."""
    classes = tuple(classes) or tuple(CLASS_NAMES)
    image, _, polygon, _ = VIEWS[0]
    reasons = "".join(f'<Choice value="{r}"/>' for r in REJECT_REASONS)
    decisions = "".join(f'<Choice value="{d}"/>' for d in DECISIONS)
    return "\n".join(
        [
            "<View>",
            '<Header value="Alert $alert_id: $kind site ($confidence, $compliance)" size="5"/>',
            '<View style="display: flex; gap: 12px">',
            '<View><Header value="Before ($before_date)" size="6"/>',
            '<Image name="before" value="$before" zoom="true"/></View>',
            '<View><Header value="After ($date)" size="6"/>',
            f'<Image name="{image}" value="${image}" zoom="true" zoomControl="true"/></View>',
            "</View>",
            f'<PolygonLabels name="{polygon}" toName="{image}" strokeWidth="2" '
            f'pointSize="small" opacity="0.3">{_labels(classes)}</PolygonLabels>',
            f'<Choices name="decision" toName="{image}" choice="single" required="true" '
            f'showInline="true">{decisions}</Choices>',
            f'<Choices name="reason" toName="{image}" choice="single" showInline="true" '
            'visibleWhen="choice-selected" whenTagName="decision" whenChoiceValue="reject">'
            f"{reasons}</Choices>",
            "</View>",
        ]
    )
