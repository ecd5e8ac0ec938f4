"""The verifier's GPU recipe: its config, and the gallery's chips carried to a GPU machine."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.real_parts import require_module

require_module("torch")

from benchmarks.bench_verifier_variants import export_chips, read_chips  # noqa: E402
from benchmarks.train_default_bundle import (  # noqa: E402
    VERIFIER,
    VERIFIER_EPOCHS_ON_GPU,
    load_verifier,
    save_verifier,
    take_verifier,
    verifier_config,
)


def test_the_recipe_trains_its_verifier_longer_on_a_cuda_device_and_nothing_else_changes():
    cpu, gpu = verifier_config("cpu", threads=1), verifier_config("cuda", threads=1)
    assert cpu.epochs == VERIFIER["epochs"] < gpu.epochs == VERIFIER_EPOCHS_ON_GPU
    assert dataclasses.replace(gpu, epochs=cpu.epochs) == cpu
    assert cpu.widths == VERIFIER["widths"] and cpu.seed == VERIFIER["seed"]


def test_exported_chips_read_back_bit_for_bit(tmp_path):
    """What a GPU machine trains on (``--chips``) is the gallery's split, nodata included."""
    from imagery.gallery import load_gallery

    path = tmp_path / "chips.npz"
    export_chips(path, splits=("val", "train"))
    gallery = load_gallery()
    for split in ("val", "train"):
        images, labels, categories = read_chips(path, split)
        chips = gallery.split(split)
        assert np.array_equal(images, chips.images, equal_nan=True)
        assert np.array_equal(labels, chips.labels) and (categories == chips.categories).all()
    assert np.isnan(images).any() and len(images) > 7000  # train: 32 px chips padded with nodata


def _trained_elsewhere(run, cfg, device: str) -> None:
    """What ``bench_verifier_variants.py --out RUN`` leaves (untrained weights will do)."""
    from training.verifier import build

    run.mkdir()
    save_verifier(build(cfg), cfg, run / "verifier.pt")
    history = [{"epoch": cfg.epochs, "loss": 0.4, "val_auroc": 0.9}]
    figures = {"device": device, "changes": [], "history": history}
    (run / "figures.json").write_text(json.dumps(figures))


def test_a_verifier_trained_on_a_gpu_machine_becomes_stage_one_only_if_it_is_the_recipes(
    tmp_path,
):
    gpu = verifier_config("cuda", threads=1)
    _trained_elsewhere(tmp_path / "gpu", gpu, "cuda")
    work = tmp_path / "work"
    work.mkdir()
    take_verifier(work, tmp_path / "gpu")
    assert load_verifier(work / "verifier.pt")[1] == gpu
    assert json.loads((work / "verifier-history.json").read_text())[-1]["epoch"] == 288
    # the CPU recipe's 144 epochs claimed as a GPU run, or another config: refused
    _trained_elsewhere(tmp_path / "short", verifier_config("cpu", threads=1), "cuda")
    with pytest.raises(SystemExit, match="epochs"):
        take_verifier(work, tmp_path / "short")
    wider = dataclasses.replace(gpu, widths=[48, 64, 128, 256])
    _trained_elsewhere(tmp_path / "wide", wider, "cuda")
    with pytest.raises(SystemExit, match="widths"):
        take_verifier(work, tmp_path / "wide")
