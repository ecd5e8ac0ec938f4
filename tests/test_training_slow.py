"""Long training checks (``pytest -m slow``): accuracy on generated scenes, DDP through torchrun.

Not part of the quick suite; ``benchmarks/bench_training.py --min-ap50 0.5`` checks the same
accuracy target for both engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from asmspotter.cli import main
from imagery.synthetic.output import generate_dataset

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cpu_training_on_generated_scenes_reaches_mask_ap50(tmp_path):
    """Train on generated scenes, evaluate on held-out generated scenes: mask AP50 >= 0.5."""
    data = tmp_path / "data"
    generate_dataset(data, 16, scene_size=512, chip_size=128, seed=7, val_fraction=0.25)
    held_out = tmp_path / "held_out"
    generate_dataset(held_out, 4, scene_size=512, chip_size=128, seed=8, val_fraction=0.0)
    bundle = tmp_path / "bundle"
    argv = ["train", "--config", f"{REPO_ROOT}/training/configs/cpu.yaml", "--data", str(data)]
    argv += ["--out", str(tmp_path / "run"), "--export", str(bundle)]
    assert main(argv) == 0
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(bundle), str(held_out), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["mask_AP50"] >= 0.5, metrics


def test_torchrun_ddp_with_two_processes(tmp_path, make_tiny_coco):
    """``--num-gpus 2`` relaunches through torchrun; on CPU the ranks talk over gloo."""
    data = make_tiny_coco(tmp_path / "ds", 12, seed=1, val_every=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "asmspotter.cli", "train", "--num-gpus", "2"]
    cmd += ["--data", str(data), "--out", str(out), "chip_size=64", "batch_size=2"]
    cmd += ["max_iter=4", "num_workers=0", "fpn_channels=32", "box_head_dim=64", "device=cpu"]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch.distributed.run --nproc_per_node=2" in done.stderr
    import torch

    assert torch.load(out / "last.pt", weights_only=False)["iteration"] == 4
