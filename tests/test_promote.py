"""Promotion of a fine-tuned bundle: the rule, the atomic replacement, and the decision made by
the real-chip benchmark (training/chip_benchmark.py) on real gallery chips."""

from __future__ import annotations

import json
import shutil

import pytest

from imagery.errors import AsmSpotterError
from training.promote import decide, promote


def test_rule():
    old = {"auroc": 0.80, "sensitivity_at_spec0.98": 0.30}
    assert decide({"auroc": 0.82, "sensitivity_at_spec0.98": 0.29}, old).promote
    assert not decide({"auroc": 0.80, "sensitivity_at_spec0.98": 0.40}, old).promote  # no gain
    assert not decide({"auroc": 0.81, "sensitivity_at_spec0.98": 0.30}, old, min_gain=0.02).promote
    low = decide({"auroc": 0.90, "sensitivity_at_spec0.98": 0.20}, old)
    assert not low.promote and "falls by 0.1000" in low.reason
    with pytest.raises(AsmSpotterError, match="no 'auroc'"):
        decide({}, old)


def test_replacement_keeps_the_old_bundle(tiny_bundle, tmp_path):
    live, new = tmp_path / "live", tmp_path / "new"
    shutil.copytree(tiny_bundle, live)
    shutil.copytree(tiny_bundle, new)
    info = json.loads((new / "bundle.json").read_text())
    info["version"] = "9.9.9"
    (new / "bundle.json").write_text(json.dumps(info))
    # The benchmark's figures for each bundle, as chip_benchmark would return them.
    figures = {new: {"auroc": 0.9, "sensitivity_at_spec0.98": 0.5},
               live: {"auroc": 0.7, "sensitivity_at_spec0.98": 0.5}}  # fmt: skip
    dry = promote(new, live, None, dry_run=True, evaluate=lambda b, _: figures[b])
    assert dry.promote and json.loads((live / "bundle.json").read_text())["version"] != "9.9.9"
    done = promote(new, live, None, evaluate=lambda b, _: figures[b])
    assert json.loads((live / "bundle.json").read_text())["version"] == "9.9.9"
    record = json.loads((live / "promotion.json").read_text())
    assert record["promote"] and record["figures"]["current"]["auroc"] == 0.7
    kept = list(tmp_path.glob("live.previous-*"))
    assert [str(k) for k in kept] == [done.previous] and (kept[0] / "model.pt").is_file()
    figures[new]["auroc"] = 0.5  # a worse candidate changes nothing
    assert not promote(new, live, None, evaluate=lambda b, _: figures[b]).promote
    assert len(list(tmp_path.glob("live.previous-*"))) == 1


def test_promote_on_real_chips(make_tiny_coco, tmp_path, capsys):
    """Two small RGB bundles scored by the real-chip benchmark on real gallery test chips."""
    from asmspotter.cli import main
    from imagery.gallery import default_root
    from tests.real_parts import missing

    if not default_root().is_dir():
        missing(f"the gallery {default_root()} is absent")
    data = make_tiny_coco(tmp_path / "ds", 8, seed=4, val_every=4)
    bundles = []
    for seed in (1, 2):
        out = tmp_path / f"b{seed}"
        args = ["train", "--data", str(data), "--out", str(tmp_path / f"run{seed}"), "--export",
                str(out), "bands=[B02,B03,B04]", "chip_size=64", "max_iter=2", "warmup_iters=1",
                "eval_period=0", "num_workers=0", "device=cpu", "fpn_channels=64",
                "box_head_dim=256", f"seed={seed}", "steps=[]"]  # fmt: skip
        assert main(args) == 0, capsys.readouterr().err
        bundles.append(out)
    live = tmp_path / "live"
    shutil.copytree(bundles[0], live)
    before = (live / "bundle.json").read_text()
    capsys.readouterr()
    args = ["promote", str(bundles[1]), "--target", str(live), "--limit", "40", "--dry-run"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.startswith(("would replace", "kept")) and "auroc" in out
    assert (live / "bundle.json").read_text() == before  # a dry run changes nothing
