"""Long training checks (``pytest -m slow``): DDP through torchrun.

Accuracy on held-out generated scenes is checked by ``benchmarks/bench_cpu_training.py``
(``--min-ap50``, 0.5 by default); both engines side by side by ``benchmarks/bench_training.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
