"""Stages 4 and 5 of the data path: merged sites -> scored candidates -> the response's sites.

A ``Candidate`` is a merged site with its outline in scene pixels and in the scene's own CRS.
Before the ``min_score`` filter every candidate passes through the predictor's ``SiteScorer``
(by default none): a function of the open scene, the candidates and the request's ``min_score``
that returns them rescored (or fewer of them: it may drop those it knows cannot reach
``min_score``), e.g. a context verifier that reads a crop of the scene around each site.
Then sites below ``min_score`` are dropped and the rest reprojected to the output CRS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rasterio.transform import Affine
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from imagery.geometry import area_m2, mask_to_geometry, reproject, to_map_space
from imagery.scene import Scene
from service.merge import MergedSite


@dataclass(frozen=True)
class Candidate:
    """A merged site before scoring."""

    pixels: BaseGeometry  # scene pixel coordinates (col, row)
    native: BaseGeometry  # the scene's CRS (``scene.grid.crs``)
    score: float  # the model's, area-weighted over the windows that saw it
    class_index: int
    parts: int  # detections merged into it

    def rescored(self, score: float) -> Candidate:
        return replace(self, score=float(score))


# (open scene, the candidates that just became final, min_score) -> the candidates to keep,
# rescored; min_score 0 keeps every candidate.
SiteScorer = Callable[[Scene, list[Candidate], float], list[Candidate]]


def rescore_masks(
    scorer: SiteScorer, scene: Scene, masks: list[np.ndarray], scores: list[float]
) -> list[float]:
    """Scores of masks on ``scene``'s pixels after a site scorer: what the service does to its
    merged sites, for callers that hold masks (labelling pre-annotations, evaluation). Empty
    masks keep their score; every mask is rescored (min_score 0)."""
    found, at = [], []
    for k, (mask, score) in enumerate(zip(masks, scores, strict=True)):
        if not mask.any():
            continue
        pixels = mask_to_geometry(mask, Affine.identity(), simplify_px=0)
        found.append(Candidate(pixels, to_map_space(pixels, scene.grid.transform), score, 0, 1))
        at.append(k)
    out = [float(s) for s in scores]
    for k, c in zip(at, scorer(scene, found, 0.0) if found else [], strict=True):
        out[k] = c.score
    return out


@dataclass
class Site:
    site_id: str
    class_name: str
    score: float
    geometry: BaseGeometry  # in the output CRS
    bbox: tuple[float, float, float, float]
    area_m2: float
    tile_id: str

    def geojson(self) -> dict[str, Any]:
        return mapping(self.geometry)


def candidates(merged: list[MergedSite], scene: Scene) -> list[Candidate]:
    transform = scene.grid.transform
    return [
        Candidate(m.geom, to_map_space(m.geom, transform), m.score, m.class_index, m.parts)
        for m in merged
    ]


def build_sites(
    found: list[Candidate],
    scene: Scene,
    classes: list[str],
    min_score: float,
    output_crs: str,
    tile_id: str,
    numbers: Iterator[int] | None = None,
) -> list[Site]:
    """Candidates scoring at least ``min_score`` as sites in ``output_crs``; numbered
    ``tile_id/n`` from ``numbers`` when given (else the id is left empty)."""
    crs = scene.grid.crs
    out = []
    for c in found:
        if c.score < min_score:
            continue
        geom = reproject(c.native, crs, output_crs)
        out.append(
            Site(
                site_id=f"{tile_id}/{next(numbers)}" if numbers is not None else "",
                class_name=classes[c.class_index],
                score=round(c.score, 6),
                geometry=geom,
                bbox=tuple(geom.bounds),
                area_m2=area_m2(c.native, crs),
                tile_id=tile_id,
            )
        )
    return out
