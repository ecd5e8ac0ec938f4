"""The context verifier: is there mining in this 480 m chip?

A small CNN over a 48 x 48 px (10 m) true-colour chip (B02, B03, B04) that answers the question the
detector cannot: is the bare soil or water it found part of a mine, or a riverbank, a fish pond, a
landslide, a field? It is trained on chip-level labels (the real Amazon Mining Watch gallery needs
no masks) and scores every site the detector reports, on a chip centred on the site.

Input is reflectance (top or bottom of the atmosphere), clipped to ``CLIP`` (the gallery's 8-bit
rendering saturates there) and normalised per band; nodata is filled by ``prepare_chips``. The
augmentations make the verifier robust to what differs between sensors, levels and seasons:
haze (path radiance, strongest in blue), gain and gamma per band, sensor noise, blur, flips,
rotations and shifts.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from imagery.stats import logistic_fit, roc_auc, sensitivity_at_specificity

CONTEXT_PX = 48
BANDS = ("B02", "B03", "B04")
CLIP = 0.3  # reflectance; the gallery's rendering saturates here
# A site scorer's screen: with a min_score, each context chip is first scored on one view, and a
# site whose fused score from that view could not reach min_score even if the 8-view mean moved
# the verifier's logit up by this much is dropped without the 8-view score. On the gallery's train
# and val chips the 8-view mean moved the logit by at most 2.20 either way (2.4.0's verifier; up by
# at most 1.84: its fused rise 3.30 over its fusion weight 1.79; 1.78 for 2.3.0's, 1.24 for
# 2.2.0's: benchmarks/bench_verifier_screen.py); on a full tile most of the detector's candidates
# are dropped here (benchmarks/bench_full_tile.py).
SCREEN_MARGIN = 2.5


@dataclass
class VerifierConfig:
    widths: list[int] = field(default_factory=lambda: [24, 32, 64, 128])
    dropout: float = 0.2
    epochs: int = 24
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = leave as is
    bf16: bool = True  # train under bfloat16 autocast (about 1.8x faster on AVX512-BF16 CPUs)
    ema: float = 0.995  # exponential moving average of the weights per step (0 = off)
    mixup: float = 0.0  # Beta(a, a) mixing of chip pairs and their labels (0 = off)
    # augmentation strengths
    haze: float = 0.04  # max added path reflectance in blue (green x0.6, red x0.35)
    gain: float = 0.15  # per-band multiplicative jitter
    gamma: float = 0.15
    noise: float = 0.004  # reflectance
    shift_px: int = 6
    blur: float = 0.2  # probability of a 3x3 box blur
    mean: list[float] = field(default_factory=lambda: [0.09, 0.09, 0.07])
    std: list[float] = field(default_factory=lambda: [0.035, 0.035, 0.04])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> VerifierConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ContextVerifier(nn.Module):
    """ResNet-style: a stem convolution at full resolution (pits are a few pixels), then one
    block per stage at /2, /4, /8; mean and max pooled features feed one logit."""

    def __init__(self, widths: list[int], dropout: float = 0.2, in_ch: int = len(BANDS)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        for cin, cout in zip(widths[:-1], widths[1:], strict=True):
            stages.append(_Block(cin, cout, 2))
        self.stages = nn.Sequential(*stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stages(self.stem(x))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled)).squeeze(1)


def prepare_chips(images: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """Reflectance [N,3,H,W] (NaN = nodata) -> normalised tensor; nodata -> the band mean (0)."""
    return normalise_chips(torch.from_numpy(np.asarray(images, np.float32)), mean, std)


def normalise_chips(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """``prepare_chips`` for a tensor on any device: clipped at ``CLIP``, normalised per band,
    nodata (NaN) -> 0, channels-last (faster convolutions)."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32, device=x.device)[None, :, None, None]
    x = torch.nan_to_num((x.clamp(0.0, CLIP) - m) / s, nan=0.0)
    return x.contiguous(memory_format=torch.channels_last)


def _augment(x: np.ndarray, cfg: VerifierConfig, rng: np.random.Generator) -> np.ndarray:
    """Reflectance batch [N,3,H,W] -> augmented copy (NaN kept as NaN)."""
    n = len(x)
    x = x.copy()
    # geometry: flips, 90-degree turns, shifts with reflection
    for i in range(n):
        img = x[i]
        if rng.random() < 0.5:
            img = img[:, :, ::-1]
        k = int(rng.integers(4))
        if k:
            img = np.rot90(img, k, axes=(1, 2))
        if cfg.shift_px:
            dy, dx = rng.integers(-cfg.shift_px, cfg.shift_px + 1, 2)
            p = cfg.shift_px
            padded = np.pad(img, ((0, 0), (p, p), (p, p)), mode="reflect")
            img = padded[:, p + dy : p + dy + img.shape[1], p + dx : p + dx + img.shape[2]]
        x[i] = img
    # radiometry: haze (additive, bluest), per-band gain, gamma, noise
    haze = rng.uniform(-0.3, 1.0, (n, 1, 1, 1)) * cfg.haze
    x = x + haze * np.array([1.0, 0.6, 0.35], np.float32)[None, :, None, None]
    x = x * (1 + rng.uniform(-cfg.gain, cfg.gain, (n, 3, 1, 1))).astype(np.float32)
    gamma = np.exp(rng.uniform(-cfg.gamma, cfg.gamma, (n, 1, 1, 1))).astype(np.float32)
    x = np.clip(x, 1e-4, None)
    x = (x / CLIP) ** gamma * CLIP
    x = x + rng.normal(0, cfg.noise, x.shape).astype(np.float32)
    blur = rng.random(n) < cfg.blur
    if blur.any():
        b = x[blur]
        padded = np.pad(b, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        acc = sum(
            padded[:, :, dy : dy + b.shape[2], dx : dx + b.shape[3]]
            for dy in range(3)
            for dx in range(3)
        )
        x[blur] = acc / 9.0
    return x.astype(np.float32)


def _augment_on_device(x: torch.Tensor, cfg: VerifierConfig, gen: torch.Generator) -> torch.Tensor:
    """``_augment``'s augmentations, batched in torch on the chips' device (a CUDA device: the
    per-chip numpy loop would starve it). The same distributions; another random stream."""
    n, c, h, w = x.shape

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, 1, 1, generator=gen, device=x.device)

    flip = torch.rand(n, generator=gen, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    turns = torch.randint(0, 4, (n,), generator=gen, device=x.device)
    x = torch.stack([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])[
        turns, torch.arange(n, device=x.device)
    ]
    if cfg.shift_px:
        p = cfg.shift_px
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=gen, device=x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        band = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, band, rows, cols]
    haze_colour = torch.tensor([1.0, 0.6, 0.35], device=x.device)[None, :, None, None]
    x = x + uniform(-0.3, 1.0, n, 1) * cfg.haze * haze_colour
    x = x * (1 + uniform(-cfg.gain, cfg.gain, n, c))
    gamma = torch.exp(uniform(-cfg.gamma, cfg.gamma, n, 1))
    x = (x.clamp_min(1e-4) / CLIP) ** gamma * CLIP
    x = x + cfg.noise * torch.randn(x.shape, generator=gen, device=x.device)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    blur = torch.rand(n, generator=gen, device=x.device) < cfg.blur
    return torch.where(blur[:, None, None, None], blurred, x)


def _ema_step(avg: torch.Tensor, new: torch.Tensor, n: int, decay: float) -> torch.Tensor:
    """One exponential-moving-average step; the decay ramps up over the first steps so a short
    run is not dominated by the random initial weights."""
    d = min(decay, (1 + n) / (10 + n))
    return d * avg + (1 - d) * new


def build(cfg: VerifierConfig) -> ContextVerifier:
    return ContextVerifier(cfg.widths, cfg.dropout)


@torch.no_grad()
def chip_logits(
    model: ContextVerifier,
    images: np.ndarray,
    cfg: VerifierConfig,
    batch: int = 512,
    tta: bool = True,
    device: str = "cpu",
) -> np.ndarray:
    """Logits per chip; with ``tta`` the mean over the 8 flips and quarter turns."""
    model.eval()
    out = []
    for start in range(0, len(images), batch):
        x = prepare_chips(images[start : start + batch], cfg.mean, cfg.std).to(device)
        views = [x]
        if tta:
            views = [torch.rot90(v, k, dims=(2, 3)) for v in (x, x.flip(3)) for k in range(4)]
        logits = torch.stack(
            [model(v.contiguous(memory_format=torch.channels_last)) for v in views]
        )
        out.append(logits.mean(0).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def score_chips(
    model: ContextVerifier, images: np.ndarray, cfg: VerifierConfig, tta: bool = True
) -> np.ndarray:
    """P(mining) per chip: images float32 [N,3,48,48] reflectance B02,B03,B04, NaN = nodata."""
    return sigmoid(chip_logits(model, images, cfg, tta=tta))


def train_verifier(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: VerifierConfig,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    init: dict | None = None,
    weights: np.ndarray | None = None,
    log: Callable[[str], None] | None = print,
    device: str = "cpu",
) -> tuple[ContextVerifier, list[dict]]:
    """Train on chips with 0/1 labels; returns the model of the last epoch and the history
    (loss and, with ``val``, AUROC and sensitivity at specificity 0.98 per epoch). On a CUDA
    ``device`` the chips stay on it and are augmented there (``_augment_on_device``)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    on_cpu = device == "cpu"
    if not on_cpu:
        gen = torch.Generator(device).manual_seed(cfg.seed)
        chips = torch.from_numpy(np.ascontiguousarray(images, np.float32)).to(device)
    autocast = torch.device(device).type
    model = build(cfg).to(device, memory_format=torch.channels_last)
    if init is not None:
        model.load_state_dict(init)
    labels = np.asarray(labels, np.float32)
    weights = np.ones(len(labels), np.float32) if weights is None else weights.astype(np.float32)
    steps_per_epoch = max(1, len(labels) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=total, pct_start=0.15)
    ema = (
        torch.optim.swa_utils.AveragedModel(
            model,
            avg_fn=lambda avg, new, n: _ema_step(avg, new, int(n), cfg.ema),
            use_buffers=True,
        )
        if cfg.ema
        else None
    )
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(labels))
        t0, losses = time.time(), []
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if on_cpu:
                x = prepare_chips(_augment(images[idx], cfg, rng), cfg.mean, cfg.std)
            else:
                at = torch.from_numpy(idx).to(device)
                x = normalise_chips(_augment_on_device(chips[at], cfg, gen), cfg.mean, cfg.std)
            y = torch.from_numpy(labels[idx]).to(device)
            y = y * (1 - cfg.label_smoothing) + 0.5 * cfg.label_smoothing
            w = torch.from_numpy(weights[idx]).to(device)
            if cfg.mixup:
                lam = float(rng.beta(cfg.mixup, cfg.mixup))
                perm = torch.from_numpy(rng.permutation(len(idx))).to(device)
                x = lam * x + (1 - lam) * x[perm]
                y, w = lam * y + (1 - lam) * y[perm], lam * w + (1 - lam) * w[perm]
            with torch.autocast(autocast, dtype=torch.bfloat16, enabled=cfg.bf16):
                logits = model(x).float()
            loss = (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss.detach())  # no device sync per step
        scorer = ema.module if ema is not None else model
        mean_loss = float(torch.stack(losses).double().mean())
        row = {"epoch": epoch + 1, "loss": mean_loss, "seconds": time.time() - t0}
        if val is not None:
            s = sigmoid(chip_logits(scorer, val[0], cfg, tta=False, device=device))
            row["val_auroc"] = roc_auc(s, val[1])
            row["val_sens_at_spec98"] = sensitivity_at_specificity(s, val[1], 0.98)
        history.append(row)
        if log:
            log(
                "  ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                )
            )
    return (ema.module if ema is not None else model).cpu(), history


# -- the verifier inside a bundle: rescoring the detector's sites --------------------------------
VERIFIER_WEIGHTS = "verifier.pt"


@dataclass(frozen=True)
class Fusion:
    """A site's score from the detector's score and the verifier's probability:
    ``sigmoid(detector * logit(p_detector) + verifier * logit(p_verifier) + bias)``, fitted as a
    logistic regression on labelled chips, so the result reads as P(mine)."""

    detector: float = 0.0
    verifier: float = 1.0
    bias: float = 0.0

    def __call__(self, p_detector: np.ndarray, p_verifier: np.ndarray) -> np.ndarray:
        return sigmoid(self.logit(p_detector, p_verifier))

    def logit(self, p_detector: np.ndarray, p_verifier: np.ndarray) -> np.ndarray:
        """The fused score before the sigmoid."""
        return self.detector * _logit(p_detector) + self.verifier * _logit(p_verifier) + self.bias


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_fusion(
    p_detector: np.ndarray, p_verifier: np.ndarray, labels: np.ndarray, l2: float = 1e-3
) -> Fusion:
    """Logistic regression of the label on (logit detector, logit verifier), by Newton steps."""
    x = np.column_stack([_logit(p_detector), _logit(p_verifier)])
    w = logistic_fit(x, labels, l2=l2)
    return Fusion(float(w[0]), float(w[1]), float(w[2]))


class SiteVerifier:
    """A bundle's verifier, ready to rescore sites: the Predictor's ``SiteScorer``.

    For each site a ``context_px`` chip centred on it (shifted inside the scene when the scene
    is large enough, padded with nodata otherwise) is scored, and the site's score becomes the
    fused probability. Stateless per call: the network is only read.
    """

    def __init__(
        self,
        model: ContextVerifier,
        cfg: VerifierConfig,
        fusion: Fusion,
        device: str = "cpu",
        context_px: int = CONTEXT_PX,
    ) -> None:
        self.model, self.cfg, self.fusion = model.eval(), cfg, fusion
        self.device, self.context_px = device, context_px

    @classmethod
    def from_bundle(cls, bundle_dir: Path, info: dict, device: str) -> SiteVerifier | None:
        """The verifier a bundle declares (``info["verifier"]``), or None."""
        from imagery.errors import AsmSpotterError, Reason
        from training.bundle import sha256_of

        spec = info.get("verifier")
        if not spec:
            return None
        path = Path(bundle_dir) / spec["weights"]
        if not path.is_file():
            raise AsmSpotterError(Reason.BUNDLE_INVALID, "verifier weights are missing", str(path))
        if spec.get("weights_sha256") and sha256_of(path) != spec["weights_sha256"]:
            raise AsmSpotterError(
                Reason.BUNDLE_INVALID, "verifier weights do not match their sha256", str(path)
            )
        cfg = VerifierConfig.from_dict(spec["config"])
        model = build(cfg)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        fusion = Fusion(**spec.get("fusion", {}))
        return cls(model.to(device), cfg, fusion, device, int(spec.get("context_px", CONTEXT_PX)))

    def origins(self, scene: Any, centres: list[tuple[float, float]]) -> list[tuple[int, int]]:
        """The (col, row) first pixel of each centre's context chip."""
        px, g = self.context_px, scene.grid
        return [(_start(col, px, g.width), _start(row, px, g.height)) for col, row in centres]

    def context(self, scene: Any, centres: list[tuple[float, float]]) -> np.ndarray:
        """float32 [N,3,px,px] reflectance (B02,B03,B04) around (col, row) centres."""
        return self.chips_at(scene, self.origins(scene, centres))

    def chips_at(self, scene: Any, origins: list[tuple[int, int]]) -> np.ndarray:
        """float32 [N,3,px,px] reflectance (B02,B03,B04) from (col, row) first pixels; the parts
        outside the scene are nodata."""
        from rasterio.windows import Window

        idx = [scene.bands.index(b) for b in BANDS]
        px, g = self.context_px, scene.grid
        out = np.full((len(origins), len(BANDS), px, px), np.nan, np.float32)
        for k, (c0, r0) in enumerate(origins):
            c1, r1 = min(g.width, c0 + px), min(g.height, r0 + px)
            data = scene.read(Window(max(c0, 0), max(r0, 0), c1 - max(c0, 0), r1 - max(r0, 0)))
            oc, orow = max(0, -c0), max(0, -r0)
            out[k, :, orow : orow + data.shape[1], oc : oc + data.shape[2]] = data[idx]
        return out

    def logits(self, chips: np.ndarray, tta: bool = True) -> np.ndarray:
        """The verifier's logit per chip; with ``tta`` the mean over the 8 flips and quarter
        turns (what a site's score uses), else the chip as it is."""
        return chip_logits(self.model, chips, self.cfg, tta=tta, device=self.device)

    def probabilities(self, chips: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(chips))

    def __call__(self, scene: Any, found: list[Any], min_score: float = 0.0) -> list[Any]:
        """Rescore ``service.sites.Candidate``s of an open scene. With ``min_score`` > 0 the
        candidates that cannot reach it are dropped after a one-view screen (see
        ``SCREEN_MARGIN``); the kept ones get the full 8-view score."""
        if not found:
            return found
        centres = [(c.pixels.centroid.x, c.pixels.centroid.y) for c in found]
        # sites sharing a context chip (all sites of a scene no larger than it) are scored once
        origins = self.origins(scene, centres)
        unique = list(dict.fromkeys(origins))
        chips = self.chips_at(scene, unique)
        p_detector = np.array([c.score for c in found])
        index = {o: k for k, o in enumerate(unique)}
        at = np.array([index[o] for o in origins])
        keep = np.ones(len(found), bool)
        if min_score > 0:
            one_view = sigmoid(self.logits(chips, tta=False))[at]
            reach = _logit(np.array(min_score)) - SCREEN_MARGIN * abs(self.fusion.verifier)
            keep = self.fusion.logit(p_detector, one_view) >= reach
        p_unique = np.full(len(unique), np.nan)
        needed = np.unique(at[keep])
        p_unique[needed] = sigmoid(self.logits(chips[needed]))
        scores = self.fusion(p_detector[keep], p_unique[at[keep]])
        kept = [c for c, k in zip(found, keep, strict=True) if k]
        return [c.rescored(float(s)) for c, s in zip(kept, scores, strict=True)]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, in float64 (scores and fused logits)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


def _start(centre: float, px: int, size: int) -> int:
    """First pixel of a ``px`` window centred on ``centre``, kept inside ``size`` if it fits;
    for a scene smaller than ``px`` the window is centred on the scene (negative start)."""
    if size <= px:
        return -((px - size) // 2)
    return int(min(max(round(centre - px / 2), 0), size - px))


def export_verifier(
    bundle_dir: str | Path,
    model: ContextVerifier,
    cfg: VerifierConfig,
    fusion: Fusion,
    default_threshold: float,
    metrics: dict | None = None,
    trained_with: str = "",
    min_detector_score: float | None = None,
) -> None:
    """Add a verifier to an exported bundle: ``verifier.pt`` (fp16) and bundle.json's
    ``verifier`` entry and ``default_threshold``. ``min_detector_score``: the lowest detector
    score a site may have to be rescored (the network is loaded to report down to it; default
    ``training.engines.base.SCORE_FLOOR``)."""
    import json

    from training.bundle import read_info, sha256_of

    bundle_dir = Path(bundle_dir)
    info = read_info(bundle_dir)
    path = bundle_dir / VERIFIER_WEIGHTS
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, path
    )
    info["verifier"] = {
        "weights": VERIFIER_WEIGHTS,
        "weights_sha256": sha256_of(path),
        "bands": list(BANDS),
        "context_px": CONTEXT_PX,
        "config": cfg.to_dict(),
        "fusion": dataclasses.asdict(fusion),
        "metrics": metrics or {},
        "trained_with": trained_with,
    }
    if min_detector_score is not None:
        info["verifier"]["min_detector_score"] = float(min_detector_score)
    info["default_threshold"] = float(default_threshold)
    (bundle_dir / "bundle.json").write_text(json.dumps(info, indent=2))
