"""The vector plan of a synthetic scene: land-cover layers, mining sites, clouds and nodata.

Everything is drawn in scene pixel space (x = column, y = row) from one seeded generator; rendering
(``render.py``) then rasterises any window of the plan, so whole scenes and block-by-block tiles
come out identical. The landscape is either closed rainforest or a farm/fallow mosaic; mining
clusters (``mining.py``) sit along its rivers. Look-alikes are painted but never labelled: rivers
(white, black, clear water), sand bars, oxbows, lakes, fish ponds, roads, clearings, villages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import substring

from imagery.errors import AsmSpotterError, Reason
from imagery.synthetic import shapes
from imagery.synthetic.atmosphere import Atmosphere
from imagery.synthetic.noise import fractal_noise
from imagery.synthetic.spectra import BANDS, PALETTES, AmazonPalette, Palette, calibration

# Land-cover codes of the painted layers (0 = forest background), in painting order.
LANDCOVER = (
    "forest",
    "clearing",
    "river",
    "sandbar",
    "lake",
    "oxbow",
    "road",
    "village",
    "roof",
    "fishpond",
    "tailings",
    "pit",
    "pond",
)
LOOKALIKES = (
    "river",
    "sandbar",
    "lake",
    "oxbow",
    "road",
    "village",
    "roof",
    "fishpond",
    "clearing",
)
HAZE = np.array([0.05, 0.04, 0.03, 0.015, 0.006, 0.003])  # additive path reflectance, full haze
SENSOR_NOISE = np.array([3, 3, 3, 4, 3, 3]) * 1e-3  # reflectance, ~ S2 MSI noise at these levels
LEVELS = ("l2a", "l1c")  # surface (bottom-of-atmosphere) or top-of-atmosphere reflectance


@dataclass(frozen=True)
class Style:
    """Landscape proportions: the legacy generator's, or the Amazon calibration's."""

    mosaic_probability: float = 0.35  # farm/fallow mosaic instead of closed forest
    river_width_px: tuple[tuple[float, float], ...] = ((3, 8), (8, 30))  # main channels
    river_width_p: tuple[float, ...] = (0.6, 0.4)
    river_kind_p: tuple[float, ...] = (0.5, 0.3, 0.2)  # white (sediment-laden), black, clear
    # clearings: wet pasture, dry pasture, bare laterite, regrowth
    clearing_kind_p: tuple[float, ...] = (0.4, 0.3, 0.1, 0.2)
    mine_extent: float = 1.0  # scales a mining cluster's stretch, spread and spoil halo


LEGACY_STYLE = Style()


def amazon_style() -> Style:
    """The Amazon's: wide sediment-laden (white-water) rivers dominate the mining regions
    (Tapajos, Madeira, Madre de Dios; Lobo et al. 2015), half the scenes lie in the deforestation
    arc's pasture mosaic, whose clearings are more often dry or bare (the real non-mine chips hold
    five times the generator's share of red-over-blue pixels), and mining clusters have the
    extent fitted to the real mine chips (``derive_calibration``)."""
    return Style(
        mosaic_probability=0.5,
        river_width_px=((4, 12), (12, 45)),
        river_width_p=(0.5, 0.5),
        river_kind_p=(0.7, 0.2, 0.1),
        clearing_kind_p=(0.25, 0.35, 0.25, 0.15),
        mine_extent=float(calibration()["mining"]["extent"]),
    )


@dataclass
class Layer:
    """Objects of one land cover: geometry, two spectra each (mixed by noise), texture."""

    name: str
    geoms: list[BaseGeometry] = field(default_factory=list)
    spec_a: list[np.ndarray] = field(default_factory=list)
    spec_b: list[np.ndarray] = field(default_factory=list)
    mix: list[float] = field(default_factory=list)
    texture: float = 0.08  # multiplicative texture amplitude
    fine_mix: bool = False  # mix with the fine (few-pixel) noise instead of the coarse one
    all_touched: bool = False  # thin lines: every touched pixel
    tree: STRtree | None = None

    @property
    def code(self) -> int:
        return LANDCOVER.index(self.name)

    def add(self, geom: BaseGeometry, a: np.ndarray, b: np.ndarray, mix: float) -> int:
        self.geoms.append(geom)
        self.spec_a.append(a)
        self.spec_b.append(b)
        self.mix.append(mix)
        return len(self.geoms) - 1

    def freeze(self) -> None:
        self.tree = STRtree(self.geoms) if self.geoms else None
        self._a = np.asarray(self.spec_a, np.float32).reshape(-1, len(BANDS))
        self._b = np.asarray(self.spec_b, np.float32).reshape(-1, len(BANDS))
        self._mix = np.asarray(self.mix, np.float32)

    def query(self, window_box: Polygon) -> np.ndarray:
        if self.tree is None:
            return np.zeros(0, np.int64)
        return np.sort(self.tree.query(window_box))


class RiverIndex:
    """River pieces with a spatial index: the union of those near a geometry, on demand."""

    def __init__(self, pieces: list[Polygon]) -> None:
        self.pieces = list(pieces)
        self.tree = STRtree(self.pieces)

    def add(self, pieces: list[Polygon]) -> None:
        self.pieces += pieces
        self.tree = STRtree(self.pieces)

    def near(self, geom: BaseGeometry) -> BaseGeometry:
        idx = np.sort(self.tree.query(geom))
        return shapely.union_all([self.pieces[i] for i in idx]) if len(idx) else Polygon()


@dataclass
class Site:
    """One labelled instance: its polygon, category and cluster."""

    id: int  # 1-based, also its value in the label raster; later ids paint over earlier ones
    category: str  # "pit" | "pond"
    geom: Polygon
    cluster: int


@dataclass
class Plan:
    seed: int
    height: int
    width: int
    layers: dict[str, Layer]
    sites: list[Site]
    forest: np.ndarray  # [2, 6] canopy and shade spectra
    secondary: np.ndarray  # [6] regrowth spectrum mixed in at large scale
    regrowth_threshold: float  # lower = more regrowth/fallow in the background (mosaic landscapes)
    cloud: dict | None  # threshold, cell, softness, shadow offset, spectrum
    haze: np.ndarray  # [6] additive haze spectrum at full strength
    gain: float
    psf: float  # weight of each neighbour in the 3-tap blur
    noise_sigma: np.ndarray  # [6] sensor noise (reflectance)
    nodata: tuple[float, float, float] | None  # (nx, ny, c): nodata where nx*x + ny*y > c
    relief: float = 0.0  # strength of terrain shading (0 = flat floodplain)
    sun: tuple[float, float] = (0.7, -0.7)  # direction (x, y) the light comes from
    topo_cell: float = 150.0  # hill size in pixels
    level: str = "l2a"  # "l1c": rendered at the top of the atmosphere through ``atmosphere``
    atmosphere: Atmosphere | None = None
    # (crowns, patches): amplitudes of the canopy's fine and 40 px texture; None = the legacy one
    forest_texture: tuple[float, float] | None = None
    composite_blur: float = 0.0  # weight of one more 3-tap blur (calibrated: real composites)
    site_tree: STRtree | None = None

    def freeze(self) -> Plan:
        for layer in self.layers.values():
            layer.freeze()
        self.site_tree = STRtree([s.geom for s in self.sites]) if self.sites else None
        return self


@dataclass
class Canvas:
    """What every drawing step shares: the generator, the scene's palette and layers, the size."""

    rng: np.random.Generator
    pal: Palette
    layers: dict[str, Layer]
    height: int
    width: int
    style: Style = LEGACY_STYLE

    @property
    def scale(self) -> float:
        return self.height * self.width / 1024**2  # in units of a 1024 x 1024 scene

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (-20.0, -20.0, self.width + 20.0, self.height + 20.0)


@dataclass
class River:
    line: LineString
    pieces: list[Polygon]
    width: float


def make_plan(
    seed: int,
    height: int,
    width: int,
    clusters: int | None = None,
    cloud_probability: float = 0.35,
    nodata_probability: float = 0.2,
    spread: float = 1.0,
    level: str = "l2a",
    palette: str = "legacy",
) -> Plan:
    """Draw a scene's plan. ``clusters`` = number of mining clusters (None: random, 0 allowed).

    ``level``: "l2a" surface reflectance or "l1c" top-of-atmosphere (an atmosphere drawn from the
    Amazon calibration). ``palette``: "legacy" (the cited spectra; the generator as it was) or
    "amazon" (colours and textures fitted to real chips, ``AmazonPalette``). The atmosphere and
    the Amazon palette draw from their own seeded streams: one seed gives one layout for every
    level, and a legacy l2a plan is exactly what the generator drew before they existed."""
    from imagery.synthetic.mining import draw_mining

    if level not in LEVELS:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"level must be one of {LEVELS}: {level!r}")
    if palette not in PALETTES:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"palette must be one of {PALETTES}: {palette!r}"
        )
    rng = np.random.default_rng(seed)
    atmosphere, forest_gain = _atmosphere(seed)
    if palette == "amazon":
        pal: Palette = AmazonPalette(np.random.default_rng([seed, 15]), spread, forest_gain)
    else:
        pal = Palette(rng, spread)
    style = amazon_style() if pal.calibrated else LEGACY_STYLE
    layers = _layers()
    if pal.calibrated:  # texture of painted land covers, fitted to the real chips' gradient energy
        for layer in layers.values():
            layer.texture *= float(calibration()["texture"]["layers"])
    cv = Canvas(rng, pal, layers, height, width, style)
    # Closed rainforest (Amazon, Congo basin) or a farm/fallow mosaic (West African forest zone).
    mosaic = bool(rng.random() < style.mosaic_probability)
    rivers, n_main = _draw_rivers(cv)
    water = RiverIndex([p for r in rivers for p in r.pieces])
    _draw_water_bodies(cv, rivers[:n_main])
    _draw_land_use(cv, [r.line for r in rivers[:n_main]], water, mosaic)
    if clusters is None:
        clusters = int(rng.choice(5, p=[0.1, 0.25, 0.3, 0.2, 0.15])) if cv.scale <= 1.5 else 0
        clusters = clusters or (int(rng.poisson(1.5 * cv.scale)) if cv.scale > 1.5 else 0)
    nodata = _nodata(rng, height, width) if rng.random() < nodata_probability else None
    sites = draw_mining(cv, clusters, rivers, water, _valid_area(height, width, nodata))
    sun_az = rng.uniform(0, 2 * np.pi)
    return Plan(
        seed=seed,
        height=height,
        width=width,
        layers=cv.layers,
        sites=sites,
        forest=np.stack([pal.scene["forest"], pal.scene["forest_shade"]]),
        regrowth_threshold=0.35 if mosaic else 0.58,
        secondary=pal.scene["secondary"],
        cloud=_cloud(rng, pal, seed, height, width, cloud_probability),
        # at l1c the atmosphere is rendered in full instead of a residual haze
        haze=(rng.uniform(0, 1) ** 2 * HAZE * (level != "l1c")).astype(np.float32),
        gain=float(np.exp(rng.normal(0, 0.08))),
        psf=float(rng.uniform(0.1, 0.2)),  # 3-tap MTF at Nyquist 0.6..0.2 (S2: ~0.3)
        noise_sigma=(
            rng.uniform(0.5, 1.5) * SENSOR_NOISE * (noise_scale() if pal.calibrated else 1)
        ).astype(np.float32),
        nodata=nodata,
        relief=float(rng.choice([rng.uniform(0, 0.3), rng.uniform(0.3, 1.2)])),
        sun=(float(np.cos(sun_az)), float(np.sin(sun_az))),
        topo_cell=float(rng.uniform(60, 250)),
        level=level,
        atmosphere=atmosphere if level == "l1c" else None,
        forest_texture=(1.0, _forest("patches")) if pal.calibrated else None,
        composite_blur=float(calibration()["blur"]["composite"]) if pal.calibrated else 0.0,
    ).freeze()


def _forest(name: str) -> float:
    """A fitted forest texture parameter: ``patches`` (amplitude of the 40 px texture)."""
    return float(calibration()["forest"][name])


def noise_scale() -> np.ndarray:
    """[6] calibrated sensor-noise scale: fitted per visible band (the real chips are median
    composites of several dates); their mean for B08 B11 B12."""
    vis = np.asarray(calibration()["forest"]["noise"], np.float64).reshape(-1)
    vis = np.broadcast_to(vis, (3,))
    return np.concatenate([vis, np.full(len(BANDS) - 3, vis.mean())])


def _atmosphere(seed: int) -> tuple[Atmosphere, float]:
    """A scene's atmosphere and forest brightness: a (tau_550, gain) pair fitted to a real chip,
    and a Sentinel-2-like geometry (morning overpass: sun 22-40 deg from zenith, view <= 11)."""
    rng = np.random.default_rng([seed, 14])
    pairs = calibration()["atmosphere"]["tau550_gain"]
    tau, gain = pairs[int(rng.integers(len(pairs)))]
    atmosphere = Atmosphere(
        tau550=float(tau),
        angstrom=float(rng.uniform(1.0, 1.8)),
        sun_zenith=float(rng.uniform(22, 40)),
        view_zenith=float(rng.uniform(0, 11)),
        relative_azimuth=float(rng.uniform(45, 135)),
    )
    return atmosphere, float(gain)


def _layers() -> dict[str, Layer]:
    layers = {name: Layer(name) for name in LANDCOVER[1:]}
    layers["road"].all_touched = True
    layers["roof"].all_touched = True
    for name, tex in (("clearing", 0.12), ("tailings", 0.18), ("pit", 0.12), ("pond", 0.05)):
        layers[name].texture = tex
    for name in ("pit", "tailings", "village"):
        layers[name].fine_mix = True
    return layers


def _draw_rivers(cv: Canvas) -> tuple[list[River], int]:
    """Main channels crossing the scene, then tributaries that join them (a tree, no crossings)."""
    rng, scale = cv.rng, cv.scale
    rivers: list[River] = []
    n_main = 1 + int(rng.random() < 0.3) + int(scale / 25)
    for _ in range(n_main):
        start, heading = _edge_start(rng, cv.width, cv.height)
        widths = [rng.uniform(*span) for span in cv.style.river_width_px]
        width_px = float(rng.choice(widths, p=list(cv.style.river_width_p)))
        line = shapes.meander(
            rng,
            start,
            heading,
            4 * (cv.width + cv.height),
            cv.bounds,
            rng.uniform(0.3, 1.4),
            wavelength=width_px * rng.uniform(10, 16),
        )
        rivers.append(River(line, shapes.variable_buffer(rng, line, width_px), width_px))
    for _ in range(int(rng.poisson(2 + 3 * scale))):
        parent = rivers[rng.integers(len(rivers))].line
        start, normal = point_and_normal(rng, parent, rng.uniform(0, parent.length))
        heading = float(np.arctan2(normal[1], normal[0])) + rng.normal(0, 0.5)  # away from it
        length = rng.uniform(100, 700) * np.sqrt(max(scale, 0.25))
        width_px = rng.uniform(1.5, 4.5)
        line = shapes.meander(
            rng,
            (start.x, start.y),
            heading,
            length,
            cv.bounds,
            rng.uniform(0.2, 1.0),
            2.0,
            wavelength=rng.uniform(30, 90),
        )
        line = _until_confluence(line, [r.line for r in rivers])
        if line is not None:
            pieces = shapes.variable_buffer(rng, line, width_px, 0.2)
            rivers.append(River(line, pieces, width_px))
    for river in rivers:
        kind = rng.choice(
            ["river_white", "river_black", "lake_clear"], p=list(cv.style.river_kind_p)
        )
        a, b = cv.pal.draw(kind), cv.pal.draw(kind, "sand", (0.0, 0.15))
        for piece in river.pieces:
            cv.layers["river"].add(piece, a, b, 0.3)
        if river.width > 6 and rng.random() < 0.5:  # sand bars on the banks of big rivers
            for _ in range(int(rng.integers(1, 4))):
                p, normal = point_and_normal(rng, river.line)
                size = rng.uniform(0.5, 1.2) * river.width
                off = river.width / 2 - size / 4
                bar = shapes.blob(rng, (p.x + normal[0] * off, p.y + normal[1] * off), size)
                cv.layers["sandbar"].add(bar, cv.pal.draw("sand"), cv.pal.draw("wet_soil"), 0.4)
    return rivers, n_main


def _draw_water_bodies(cv: Canvas, main_rivers: list[River]) -> None:
    """Oxbow lakes beside the main rivers and a few lakes."""
    rng, pal = cv.rng, cv.pal
    for river in main_rivers:
        for _ in range(int(rng.poisson(1.2 * np.sqrt(cv.scale)))):
            p, normal = point_and_normal(rng, river.line)
            radius = rng.uniform(8, 40)
            off = river.width / 2 + radius + rng.uniform(3, 20)
            center = (p.x + normal[0] * off, p.y + normal[1] * off)
            bow = shapes.oxbow(rng, center, radius, max(2.0, river.width * rng.uniform(0.4, 0.9)))
            kind = rng.choice(["river_black", "pond_green", "lake_clear", "river_white"])
            cv.layers["oxbow"].add(bow, pal.draw(kind), pal.draw("pond_green"), 0.5)
    for _ in range(int(rng.poisson(0.4 * cv.scale))):
        center = (rng.uniform(0, cv.width), rng.uniform(0, cv.height))
        lake = shapes.blob(rng, center, rng.uniform(25, 90))
        kind = rng.choice(["lake_clear", "river_black", "pond_green"])
        cv.layers["lake"].add(lake, pal.draw(kind), pal.draw("lake_clear"), 0.3)


def _draw_land_use(
    cv: Canvas, main_lines: list[LineString], water: RiverIndex, mosaic: bool
) -> None:
    """Roads, villages along them, clearings, pasture and farm plots, fish ponds."""
    rng, pal, layers, scale = cv.rng, cv.pal, cv.layers, cv.scale
    land_use = 3.0 if mosaic else 1.0
    roads = []
    for _ in range(int(rng.poisson(land_use * np.sqrt(scale)))):
        start, heading = _edge_start(rng, cv.width, cv.height)
        line = shapes.meander(
            rng,
            start,
            heading,
            3 * (cv.width + cv.height),
            cv.bounds,
            rng.uniform(0.05, 0.4),
            4.0,
            wavelength=rng.uniform(200, 600),
        )
        roads.append(line)
        w = rng.uniform(1.0, 2.2)
        layers["road"].add(line.buffer(w / 2), pal.draw("road"), pal.draw("laterite"), 0.3)
    anchors = roads + main_lines
    for _ in range(int(rng.poisson(1.2 * land_use * scale))):
        p, _ = point_and_normal(rng, anchors[rng.integers(len(anchors))])
        ground = shapes.blob(rng, (p.x, p.y), rng.uniform(12, 35))
        layers["village"].add(
            ground, pal.draw("laterite"), pal.draw("secondary"), rng.uniform(0.3, 0.7)
        )
        for _ in range(int(rng.integers(8, 40))):
            q = (p.x + rng.normal(0, 6), p.y + rng.normal(0, 6))
            s = rng.uniform(0.6, 1.6)
            roof = box(q[0] - s / 2, q[1] - s / 2, q[0] + s / 2, q[1] + s / 2)
            layers["roof"].add(roof, pal.draw("roof"), pal.draw("laterite"), 0.3)
    for _ in range(int(rng.poisson((150.0 if mosaic else 2.0) * scale))):
        near = anchors[rng.integers(len(anchors))] if rng.random() < 0.7 else None
        p = point_and_normal(rng, near)[0] if near is not None else None
        center = (p.x, p.y) if p else (rng.uniform(0, cv.width), rng.uniform(0, cv.height))
        if mosaic and rng.random() < 0.7:  # a farm plot: a skewed, rotated quadrilateral
            field_ = shapes.plot(rng, center, rng.uniform(15, 80))
        else:
            field_ = shapes.blob(rng, center, rng.uniform(25, 160) / np.sqrt(land_use))
        kind = rng.choice(
            ["pasture_wet", "pasture_dry", "laterite", "secondary"],
            p=list(cv.style.clearing_kind_p),
        )
        other = rng.choice(["secondary", "pasture_dry", "laterite"])
        layers["clearing"].add(field_, pal.draw(kind), pal.draw(other), rng.uniform(0.2, 0.8))
    for _ in range(int(rng.poisson(1.2 * scale))):
        for _ in range(10):  # on dry land beside a road or river
            p, normal = point_and_normal(rng, anchors[rng.integers(len(anchors))])
            off = rng.uniform(15, 60)
            grid = shapes.rectangle_grid(
                rng, (p.x + normal[0] * off, p.y + normal[1] * off), rng.uniform(0, np.pi)
            )
            dikes = shapely.union_all(grid).buffer(2.5, join_style="mitre")
            if not water.near(dikes).intersects(dikes):
                break
        else:
            continue
        layers["clearing"].add(dikes, pal.draw("pasture_wet"), pal.draw("laterite"), 0.5)
        for pond in grid:
            kind = rng.choice(["fishpond", "pond_green", "pond_moderate"], p=[0.5, 0.3, 0.2])
            layers["fishpond"].add(pond, pal.draw(kind), pal.draw("fishpond"), 0.2)


def _valid_area(height: int, width: int, nodata: tuple[float, float, float] | None) -> Polygon:
    """Where mining may go: inside the swath, away from the scene's edges."""
    margin = min(64.0, min(width, height) / 8)
    valid = box(margin, margin, width - margin, height - margin)
    if nodata is not None:
        far = 4 * (width + height)
        valid = valid.intersection(Polygon(_half_plane(*nodata, far)))
    return valid


def _edge_start(
    rng: np.random.Generator, width: int, height: int
) -> tuple[tuple[float, float], float]:
    side = rng.integers(4)
    if side == 0:
        return (rng.uniform(0, width), -10.0), np.pi / 2 + rng.normal(0, 0.4)
    if side == 1:
        return (rng.uniform(0, width), height + 10.0), -np.pi / 2 + rng.normal(0, 0.4)
    if side == 2:
        return (-10.0, rng.uniform(0, height)), rng.normal(0, 0.4)
    return (width + 10.0, rng.uniform(0, height)), np.pi + rng.normal(0, 0.4)


def _until_confluence(line: LineString, others: list[LineString]) -> LineString | None:
    """Cut a tributary where it first meets another river (networks join, they do not cross)."""
    head = 8.0  # leave its own junction alone
    if line.length <= head + 5:
        return None
    rest = substring(line, head, line.length)
    hits = [rest.intersection(o) for o in others if rest.intersects(o)]
    if not hits:
        return line
    cut = min(rest.project(p) for h in hits for p in getattr(h, "geoms", [h]) if not p.is_empty)
    return substring(line, 0, head + cut) if head + cut > 20 else None


def point_and_normal(
    rng: np.random.Generator, line: LineString | None, at: float | None = None
) -> tuple[Point, tuple[float, float]]:
    d = rng.uniform(0, line.length) if at is None else at
    p, q = line.interpolate(d), line.interpolate(min(d + 2.0, line.length))
    dx, dy = q.x - p.x, q.y - p.y
    n = np.hypot(dx, dy) or 1.0
    sign = 1 if rng.random() < 0.5 else -1
    return p, (sign * -dy / n, sign * dx / n)


def _cloud(
    rng: np.random.Generator, pal: Palette, seed: int, height: int, width: int, probability: float
) -> dict | None:
    if rng.random() >= probability:
        return None
    cover = rng.uniform(0.03, 0.35)
    cell = float(rng.uniform(60, 220))
    cseed = seed * 7 + 11
    # Noise statistics are stationary: a 1024 px corner gives the threshold for the wanted cover.
    h, w = min(height, 1024), min(width, 1024)
    sample = fractal_noise(cseed, 0, 0, h, w, cell, 6)[::4, ::4]
    sample += 0.35 * (fractal_noise(cseed + 1, 0, 0, h, w, cell * 10, 3)[::4, ::4] - 0.5)
    return {
        "seed": cseed,
        "cell": cell,
        "threshold": float(np.quantile(sample, 1 - cover)),
        "softness": float(rng.uniform(0.03, 0.12)),
        "opacity": float(rng.choice([rng.uniform(0.85, 1.0), rng.uniform(0.3, 0.7)], p=[0.7, 0.3])),
        "shadow": (float(rng.uniform(-60, 60)), float(rng.uniform(-60, 60))),
        "shadow_keep": np.array([0.45, 0.4, 0.35, 0.3, 0.3, 0.3], np.float32)
        * np.float32(rng.uniform(0.8, 1.3)),
        "spectrum": pal.draw("cloud"),
        # Tiles stacked with the SCL mask (``asmspotter stack``) carry clouds as nodata.
        "masked": bool(rng.random() < 0.3),
    }


def _half_plane(nx: float, ny: float, c: float, far: float) -> list[tuple[float, float]]:
    """A large polygon covering nx*x + ny*y <= c (the valid side of a swath edge)."""
    p0 = np.array([nx, ny]) * c  # a point on the edge line
    along = np.array([-ny, nx]) * far
    back = -np.array([nx, ny]) * far
    return [
        tuple(p0 + along),
        tuple(p0 - along),
        tuple(p0 - along + back),
        tuple(p0 + along + back),
    ]


def _nodata(rng: np.random.Generator, height: int, width: int) -> tuple[float, float, float]:
    angle = rng.uniform(0, 2 * np.pi)
    nx, ny = float(np.cos(angle)), float(np.sin(angle))
    proj = [nx * x + ny * y for x in (0, width) for y in (0, height)]
    lo, hi = min(proj), max(proj)
    return nx, ny, float(hi - rng.uniform(0.05, 0.4) * (hi - lo))
