"""Promotion: a fine-tuned bundle replaces the live one only if the real-chip benchmark says it is
better (``training.chip_benchmark.evaluate_bundle_on_chips`` on the gallery's test split).

The rule: the candidate's ``metric`` (default AUROC) must beat the live bundle's by more than
``min_gain``, and its sensitivity at specificity 0.98 must not fall by more than ``max_drop``.
Replacing is atomic for readers of the folder: the candidate is copied next to the target, the
old bundle is moved aside (``<target>.previous-<version>-<time>``), the copy renamed into place,
and ``promotion.json`` in the new folder records both sets of figures.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagery.errors import AsmSpotterError, Reason

GUARD = "sensitivity_at_spec0.98"


@dataclass
class Decision:
    promote: bool
    metric: str
    candidate: float
    current: float
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)  # both benchmark results
    previous: str | None = None  # where the old bundle went


def decide(
    candidate: dict[str, Any],
    current: dict[str, Any],
    metric: str = "auroc",
    min_gain: float = 0.0,
    max_drop: float = 0.02,
) -> Decision:
    """Compare two benchmark results (``chip_metrics`` dicts)."""
    for name, figures in (("candidate", candidate), ("current", current)):
        if not isinstance(figures.get(metric), int | float):
            raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"the {name} has no {metric!r} figure")
    new, old = float(candidate[metric]), float(current[metric])
    gain = new - old
    drop = float(current.get(GUARD, 0.0)) - float(candidate.get(GUARD, 0.0))
    if gain <= min_gain:
        why = f"{metric} {new:.4f} vs {old:.4f}: gain {gain:+.4f} is not above {min_gain:g}"
        ok = False
    elif drop > max_drop:
        why = f"{metric} gains {gain:+.4f} but {GUARD} falls by {drop:.4f} (> {max_drop:g})"
        ok = False
    else:
        why = f"{metric} {new:.4f} vs {old:.4f} (gain {gain:+.4f}); {GUARD} change {-drop:+.4f}"
        ok = True
    return Decision(ok, metric, new, old, why, {"candidate": candidate, "current": current})


def replace_bundle(candidate: Path, target: Path, decision: Decision) -> Path:
    """Put ``candidate`` in ``target``'s place; returns where the old bundle went."""
    info = json.loads((target / "bundle.json").read_text()) if target.is_dir() else {}
    stamp = time.strftime("%Y%m%dT%H%M%S")
    previous = target.with_name(f"{target.name}.previous-{info.get('version', 'x')}-{stamp}")
    staging = target.with_name(f"{target.name}.incoming-{stamp}")
    shutil.copytree(candidate, staging)
    decision.previous = str(previous) if target.exists() else None
    (staging / "promotion.json").write_text(json.dumps(asdict(decision), indent=1, default=str))
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    return previous


def promote(
    candidate: str | Path,
    target: str | Path,
    chips: Any,
    *,
    metric: str = "auroc",
    min_gain: float = 0.0,
    max_drop: float = 0.02,
    dry_run: bool = False,
    evaluate: Callable[[Path, Any], dict[str, Any]] | None = None,
) -> Decision:
    """Benchmark both bundles on ``chips`` and replace ``target`` when the candidate wins."""
    if evaluate is None:
        try:
            from training.chip_benchmark import evaluate_bundle_on_chips as evaluate
        except ModuleNotFoundError as exc:
            raise AsmSpotterError(
                Reason.INVALID_ARGUMENT,
                f"the real-chip benchmark is not installed ({exc.name}); it decides promotions",
            ) from exc
    candidate, target = Path(candidate), Path(target)
    for path in (candidate, target):
        if not (path / "bundle.json").is_file():
            raise AsmSpotterError(Reason.BUNDLE_INVALID, "no bundle.json in the folder", str(path))
    decision = decide(
        evaluate(candidate, chips), evaluate(target, chips), metric, min_gain, max_drop
    )
    if decision.promote and not dry_run:
        replace_bundle(candidate, target, decision)
    return decision
