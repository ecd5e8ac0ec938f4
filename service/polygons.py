"""Stage 3 of the data path: each window's masks -> pixel-exact polygons in scene pixels, merged
across window seams (``service/merge.py``) into sites that are final once no later window row can
reach them."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

from imagery.geometry import mask_to_geometry
from service.merge import Detection, MergedSite, SeamMerger
from service.prefilter import WindowPrefilter
from service.windows import SourceWindow

# Masks at the scene's origin have an identity transform, which rasterio warns about needlessly.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.features")


def window_detections(
    item: SourceWindow, inst: Any, floor: float, site_test: WindowPrefilter | None
) -> list[Detection]:
    """The window's instances scoring at least ``floor`` as polygons in scene pixels; with a
    site test, those without enough water or bare-soil pixels under their mask are dropped."""
    if inst is None or len(inst.scores) == 0:
        return []
    window = item.window
    h, w = int(window.height), int(window.width)
    c0, r0 = int(window.col_off), int(window.row_off)
    box = (c0, r0, c0 + w, r0 + h)
    out = []
    for mask, score, cls in zip(inst.masks, inst.scores, inst.classes, strict=True):
        if score < floor:
            continue
        mask = np.asarray(mask[:h, :w], bool)  # drop the padding
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            continue
        if site_test is not None and item.support is not None:
            if not site_test.enough(mask & item.support):
                continue  # no water or bare soil under it: cloud, shadow or forest
        crop = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        # Exact pixel outlines: simplifying would cost small sites (a few px) their shape.
        geom = mask_to_geometry(crop, Affine.translation(c0 + cols[0], r0 + rows[0]), simplify_px=0)
        if geom is not None:
            out.append(Detection(geom, float(score), int(cls), box))
    return out


class SiteMerger:
    """Feeds windows (row-major) into a ``SeamMerger``; hands out the sites that became final."""

    def __init__(
        self, merge_iou: float, floor: float, site_test: WindowPrefilter | None = None
    ) -> None:
        self.merger = SeamMerger(merge_iou)
        self.floor, self.site_test = floor, site_test

    def add(self, item: SourceWindow, inst: Any) -> list[MergedSite]:
        """Add one window; at the end of a window row, the sites no later row can reach."""
        self.merger.add(window_detections(item, inst, self.floor, self.site_test))
        return self.merger.pop_final(item.next_row) if item.row_end else []

    def flush(self) -> list[MergedSite]:
        return self.merger.flush()
