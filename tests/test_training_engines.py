"""What each engine honours and how it is launched: a config field an engine would ignore is
refused, and Detectron2 is started by its own launcher only (never inside torchrun)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagery.errors import AsmSpotterError, Reason
from tests.real_parts import require_module
from training.config import TrainConfig
from training.engines.base import ENGINES, get_engine

REPO = Path(__file__).resolve().parents[1]


def test_every_config_field_is_honoured_or_refused():
    tv = get_engine("torchvision")
    assert TrainConfig.field_names() - tv.honours == {"engine_options"}
    with pytest.raises(AsmSpotterError) as err:
        tv.check_config(TrainConfig(engine_options={"MODEL.ROI_BOX_HEAD.FC_DIM": 128}))
    assert err.value.reason == Reason.INVALID_ARGUMENT
    assert "torchvision engine does not support engine_options=" in str(err.value)
    tv.check_config(TrainConfig(box_head_dim=128, oversample_positives=3))
    if "detectron2" in ENGINES:
        require_module("detectron2")
        d2 = get_engine("detectron2")
        assert d2.honours == TrainConfig.field_names() and d2.launches_itself
        d2.check_config(TrainConfig(engine="detectron2", box_head_dim=128, oversample_positives=3))


def test_detectron2_refuses_to_run_inside_torchrun(monkeypatch, make_tiny_coco, tmp_path):
    require_module("detectron2")
    from training.data import load_train_data

    cfg = TrainConfig(engine="detectron2", backbone="R18", device="cpu", max_iter=1)
    data = load_train_data(cfg, make_tiny_coco(tmp_path / "ds", 4))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(AsmSpotterError) as err:
        get_engine("detectron2").train(cfg, data, tmp_path / "run", resume=False)
    assert err.value.reason == Reason.INVALID_ARGUMENT and "not under torchrun" in str(err.value)


def test_detectron2_num_gpus_is_its_own_launch(make_tiny_coco, tmp_path):
    """`--num-gpus 2` with Detectron2 on a machine without two GPUs: one clear line, and no
    torchrun around Detectron2's launch (which trained the whole dataset on every rank)."""
    require_module("detectron2")
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs: the refusal cannot be shown here")
    data = make_tiny_coco(tmp_path / "ds", 4)
    cmd = [sys.executable, "-m", "asmspotter.cli", "train", "--num-gpus", "2", "--data", str(data)]
    cmd += ["--out", str(tmp_path / "run"), "engine=detectron2", "backbone=R18", "device=cpu"]
    cmd += ["max_iter=1", "num_workers=0", "chip_size=64"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "launching:" not in run.stderr  # no torchrun
    assert run.stderr.strip().splitlines()[-1].startswith("error [INVALID_ARGUMENT]: --num-gpus 2")


def test_one_rule_each_for_f1_devices_and_samplers():
    """Precision/recall/F1, device choice and the sample stream each have one implementation
    that both engines use (they were written two or three times)."""
    import training.train as loop
    from training import evaluate, sampling
    from training.devices import resolve_device

    assert evaluate.prf(3, 1, 2) == {
        "tp": 3,
        "fp": 1,
        "fn": 2,
        "precision": 0.75,
        "recall": 0.6,
        "f1": pytest.approx(2 / 3),
    }
    assert not hasattr(loop, "resolve_device") or loop.resolve_device is resolve_device
    assert not hasattr(loop, "RunSampler") or loop.RunSampler is sampling.RunSampler
    with pytest.raises(AsmSpotterError) as err:
        resolve_device("cuda:7")
    assert err.value.reason == Reason.INVALID_ARGUMENT
    if "detectron2" in ENGINES:
        require_module("detectron2")
        from training.engines import detectron2_data, detectron2_engine, detectron2_eval

        assert detectron2_eval.prf is evaluate.prf
        assert detectron2_engine.resolve_device is resolve_device
        assert not hasattr(detectron2_data, "ResumableSampler")
        assert not hasattr(detectron2_data, "fill_nodata")  # nodata: prepare_input's rule


def test_shipped_configs_load_and_the_default_bundle_comes_from_its_recipe():
    """Every config in training/configs loads and passes its engine's checks; the packaged
    default bundle's detector was trained from the recipe's config file, key for key."""
    import json

    import yaml

    from benchmarks.train_default_bundle import DETECTOR_CONFIG
    from service.server import DEFAULT_BUNDLE
    from training.config import load_config

    configs = sorted((REPO / "training" / "configs").glob("*.yaml"))
    assert {p.name for p in configs} >= {"cpu.yaml", "default.yaml", "default-torchvision.yaml"}
    for path in configs:
        cfg = load_config(path)
        if cfg.engine == "detectron2":
            require_module("detectron2")
        get_engine(cfg.engine).check_config(cfg)
    written = yaml.safe_load(DETECTOR_CONFIG.read_text())
    shipped = TrainConfig.from_dict(
        json.loads((DEFAULT_BUNDLE / "bundle.json").read_text())["config"]
    )
    expected = load_config(DETECTOR_CONFIG)
    for key in written:
        assert getattr(shipped, key) == getattr(expected, key), key
