"""The Detectron2 config of an N-band Mask R-CNN (R-FPN), built from a ``TrainConfig``.

Starts from the model zoo's ``mask_rcnn_R_50_FPN_3x.yaml`` (no weights: ``MODEL.WEIGHTS`` is empty
or a local file). Every input arrives prepared by ``training.engines.base`` (normalised with the
dataset statistics, nodata at 0), so ``PIXEL_MEAN/STD`` are 0 and 1 and the stem takes
``len(cfg.bands)`` channels. Random init needs a
trainable norm: ``RESNETS.NORM`` GN or BN with ``FREEZE_AT=0`` (frozen BN diverges).
"""

from __future__ import annotations

import math
from pathlib import Path

from detectron2 import model_zoo
from detectron2.config import CfgNode, get_cfg

from imagery.errors import AsmSpotterError, Reason
from training.config import TrainConfig
from training.engines.base import SCORE_FLOOR

BASE_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
# TrainConfig.backbone -> ResNet depth (torchvision-style names accepted too)
DEPTHS = {
    "R18": 18,
    "R34": 34,
    "R50": 50,
    "R101": 101,
    "resnet18": 18,
    "resnet34": 34,
    "resnet50": 50,
    "resnet101": 101,
}


# Detectron2 keys that TrainConfig fields set; engine_options may not contradict them.
OWNED_KEYS = {
    "MODEL.ROI_BOX_HEAD.FC_DIM": "box_head_dim",
    "MODEL.FPN.OUT_CHANNELS": "fpn_channels",
    "MODEL.PIXEL_MEAN": "the bundle's normalisation",
    "MODEL.PIXEL_STD": "the bundle's normalisation",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": "SCORE_FLOOR (filter with predict's score_threshold)",
}


def schedule(cfg: TrainConfig, n_train: int, world: int) -> tuple[int, list[int]]:
    """(max_iter, lr steps); ``epochs`` > 0 rescales both to iterations over ``n_train`` images."""
    if cfg.epochs <= 0:
        return cfg.max_iter, list(cfg.steps)
    per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * world)))
    max_iter = cfg.epochs * per_epoch
    return max_iter, [round(s / cfg.max_iter * max_iter) for s in cfg.steps]


def build_config(
    cfg: TrainConfig,
    device: str,
    output_dir: str = "",
    world: int = 1,
    n_train: int = 0,
    score_floor: float = SCORE_FLOOR,
) -> CfgNode:
    """A frozen Detectron2 ``CfgNode`` for ``cfg`` on ``device`` (``world`` processes); the
    network reports detections from ``score_floor`` up (``training.engines.base.score_floor``)."""
    depth = DEPTHS.get(cfg.backbone)
    if depth is None:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            f"detectron2 engine: unknown backbone {cfg.backbone!r}; choose one of {sorted(DEPTHS)}",
        )
    if len(cfg.anchor_sizes) != 5:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, "anchor_sizes needs 5 values (FPN levels P2-P6)"
        )
    if cfg.init_weights and not Path(cfg.init_weights).is_file():  # local files only, no URLs
        raise AsmSpotterError(
            Reason.FILE_NOT_FOUND, "no such initial weights file", str(cfg.init_weights)
        )
    if cfg.norm == "FrozenBN" and not cfg.init_weights:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, "norm FrozenBN needs init_weights (random init diverges)"
        )
    d2 = get_cfg()
    d2.merge_from_file(model_zoo.get_config_file(BASE_CONFIG))
    m = d2.MODEL
    m.DEVICE = device
    m.WEIGHTS = cfg.init_weights or ""
    m.MASK_ON = True
    m.PIXEL_MEAN = [0.0] * len(cfg.bands)  # inputs come normalised (prepare_input)
    m.PIXEL_STD = [1.0] * len(cfg.bands)
    m.BACKBONE.FREEZE_AT = max(0, 5 - cfg.trainable_layers)  # as torchvision's trainable_layers
    m.RESNETS.DEPTH = depth
    m.RESNETS.NORM = cfg.norm
    if depth in (18, 34):
        m.RESNETS.RES2_OUT_CHANNELS = 64
    gn = "GN" if cfg.norm == "GN" else ""
    m.FPN.NORM = gn
    m.FPN.OUT_CHANNELS = cfg.fpn_channels
    m.ROI_BOX_HEAD.NORM = gn
    m.ROI_MASK_HEAD.NORM = gn
    m.ANCHOR_GENERATOR.SIZES = [[int(s)] for s in cfg.anchor_sizes]
    m.ANCHOR_GENERATOR.ASPECT_RATIOS = [[float(a) for a in cfg.aspect_ratios]]
    m.RPN.PRE_NMS_TOPK_TRAIN = cfg.rpn_pre_nms_topk_train
    m.RPN.POST_NMS_TOPK_TRAIN = cfg.rpn_post_nms_topk_train
    m.RPN.PRE_NMS_TOPK_TEST = cfg.rpn_pre_nms_topk_test
    m.RPN.POST_NMS_TOPK_TEST = cfg.rpn_post_nms_topk_test
    m.RPN.BATCH_SIZE_PER_IMAGE = cfg.rpn_batch_size_per_image
    m.ROI_HEADS.NUM_CLASSES = len(cfg.classes)
    m.ROI_HEADS.BATCH_SIZE_PER_IMAGE = cfg.roi_batch_size_per_image
    m.ROI_HEADS.SCORE_THRESH_TEST = score_floor  # fixed: predict filters per call
    m.ROI_BOX_HEAD.FC_DIM = cfg.box_head_dim
    d2.TEST.DETECTIONS_PER_IMAGE = cfg.detections_per_image
    d2.TEST.EVAL_PERIOD = cfg.eval_period

    max_iter, steps = schedule(cfg, n_train, world)
    s = d2.SOLVER
    s.IMS_PER_BATCH = cfg.batch_size * world  # Detectron2 counts the batch over all processes
    s.BASE_LR = cfg.lr
    s.MOMENTUM = cfg.momentum
    s.WEIGHT_DECAY = cfg.weight_decay
    s.WEIGHT_DECAY_NORM = 0.0
    s.MAX_ITER = max_iter
    s.STEPS = tuple(st for st in steps if st < max_iter)
    s.GAMMA = cfg.gamma
    s.LR_SCHEDULER_NAME = "WarmupCosineLR" if cfg.schedule == "cosine" else "WarmupMultiStepLR"
    s.WARMUP_ITERS = min(cfg.warmup_iters, max_iter)
    s.WARMUP_FACTOR = cfg.warmup_factor
    s.WARMUP_METHOD = "linear"
    s.CHECKPOINT_PERIOD = cfg.checkpoint_period or max_iter
    s.CLIP_GRADIENTS.ENABLED = cfg.clip_grad > 0
    s.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    s.CLIP_GRADIENTS.CLIP_VALUE = float(cfg.clip_grad or 1.0)
    s.CLIP_GRADIENTS.NORM_TYPE = 2.0
    s.AMP.ENABLED = bool(cfg.amp and device.startswith("cuda"))
    d2.DATALOADER.NUM_WORKERS = cfg.num_workers
    d2.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False  # negatives are kept
    d2.DATALOADER.ASPECT_RATIO_GROUPING = False
    d2.SEED = cfg.seed
    d2.OUTPUT_DIR = output_dir
    d2.VIS_PERIOD = 0

    owned = sorted(set(cfg.engine_options) & set(OWNED_KEYS))
    if owned:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT,
            "detectron2 engine_options: "
            + ", ".join(f"{k} is set by {OWNED_KEYS[k]}" for k in owned)
            + "; set those instead",
        )
    options = [str(v) for kv in cfg.engine_options.items() for v in kv]
    try:
        d2.merge_from_list(options)
    except (KeyError, ValueError, AssertionError) as exc:
        raise AsmSpotterError(Reason.INVALID_ARGUMENT, f"detectron2 engine_options: {exc}") from exc
    d2.freeze()
    return d2
