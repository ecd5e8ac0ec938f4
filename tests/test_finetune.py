"""`asmspotter train --init-bundle`: fine-tuning starts from a bundle's weights, config and
normalisation, records where it came from, and carries the parts training does not make."""

from __future__ import annotations

import json
import shutil

from asmspotter.cli import main
from tests.real_parts import require_module


def test_finetune_starts_from_the_bundle(tiny_bundle, make_tiny_coco, tmp_path, capsys):
    torch = require_module("torch")
    source = tmp_path / "source"
    shutil.copytree(tiny_bundle, source)
    info = json.loads((source / "bundle.json").read_text())
    # A part of the bundle the detector's training does not make (e.g. a site verifier).
    (source / "verifier.pt").write_bytes(b"verifier weights")
    info["verifier"] = {"weights": "verifier.pt", "threshold": 0.4}
    (source / "bundle.json").write_text(json.dumps(info))
    data = make_tiny_coco(tmp_path / "reviews", 4, seed=9, val_every=2)
    out = tmp_path / "bundle"
    args = ["train", "--init-bundle", str(source), "--data", str(data), "--out",
            str(tmp_path / "run"), "--export", str(out), "max_iter=1", "lr=1e-12",
            "warmup_iters=1", "eval_period=0", "num_workers=0", "device=cpu",
            "steps=[]"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    new = json.loads((out / "bundle.json").read_text())
    # The bundle's architecture, bands and normalisation, not the new data's statistics.
    assert new["normalization"] == info["normalization"]
    for key in ("fpn_channels", "box_head_dim", "chip_size", "bands", "engine"):
        assert new["config"][key] == info["config"][key], key
    assert new["training"]["init_bundle"]["weights_sha256"] == info["weights_sha256"]
    assert "--init-bundle" in new["trained_with"]
    assert "fine-tuned from: " in (out / "model_card.md").read_text()
    assert new["verifier"] == info["verifier"]
    assert (out / "verifier.pt").read_bytes() == b"verifier weights"
    # One step at lr 1e-12 leaves the weights where the bundle had them (fp16 both ways).
    before = torch.load(source / "model.pt", weights_only=True)
    after = torch.load(out / "model.pt", weights_only=True)
    assert before.keys() == after.keys()
    worst = max(float((before[k].float() - after[k].float()).abs().max()) for k in before)
    assert worst < 1e-2
    # A different start really gives different weights (the check above can fail).
    fresh = tmp_path / "fresh"
    plain = ["train", "--data", str(data), "--out", str(tmp_path / "run2"), "--export",
             str(fresh), *args[args.index("max_iter=1"):], "fpn_channels=64",
             "box_head_dim=256", "chip_size=64"]  # fmt: skip
    assert main(plain) == 0
    other = torch.load(fresh / "model.pt", weights_only=True)
    assert max(float((before[k].float() - other[k].float()).abs().max()) for k in before) > 1e-2
