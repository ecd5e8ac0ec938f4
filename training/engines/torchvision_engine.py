"""torchvision Mask R-CNN with an N-band stem: ResNet-FPN (or MobileNetV3-FPN), random init.

Nothing is downloaded: backbone and detector weights are ``None`` unless ``init_weights`` names a
local state dict (an ImageNet RGB stem is spread over the N bands). Images arrive normalised (see
``training.data``), so the model's own transform only rescales by ``input_scale`` - a fixed factor,
because a pixel is always 10 m and chips of any size must keep that scale.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from imagery.errors import AsmSpotterError, Reason
from training.config import TrainConfig
from training.data import TrainData
from training.engines.base import (
    SCORE_FLOOR,
    DetectionModel,
    Engine,
    Instances,
    prepare_input,
    score_floor,
)

RESNETS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
MASK_THRESHOLD = 0.5


def _norm_layer(norm: str) -> type[nn.Module] | object:
    if norm == "GN":
        return lambda channels: nn.GroupNorm(min(32, channels // 4) or 1, channels)
    if norm == "FrozenBN":
        from torchvision.ops.misc import FrozenBatchNorm2d

        return FrozenBatchNorm2d
    return nn.BatchNorm2d


class FixedScaleTransform(GeneralizedRCNNTransform):
    """Batches and rescales by a constant factor; images are normalised upstream."""

    def __init__(self, scale: float, n_channels: int) -> None:
        super().__init__(1, 1, [0.0] * n_channels, [1.0] * n_channels, size_divisible=32)
        self.scale = scale

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if self.scale == 1.0:
            return image, target
        h, w = image.shape[-2:]
        size = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        if target is not None:
            target = dict(target)
            sy, sx = size[0] / h, size[1] / w
            target["boxes"] = target["boxes"] * target["boxes"].new_tensor([sx, sy, sx, sy])
            if "masks" in target:
                masks = target["masks"][:, None].float()
                target["masks"] = F.interpolate(masks, size=size, mode="nearest")[:, 0].byte()
        return image, target


def _backbone(cfg: TrainConfig, n_channels: int) -> BackboneWithFPN:
    norm = _norm_layer(cfg.norm)
    fpn_norm = norm if cfg.norm == "GN" else None
    if cfg.backbone in RESNETS:
        body = RESNETS[cfg.backbone](weights=None, norm_layer=norm)
        body.conv1 = nn.Conv2d(n_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        c = 512 if cfg.backbone in ("resnet18", "resnet34") else 2048
        layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][: cfg.trainable_layers]
        if "conv1" in layers:
            layers.append("bn1")
        for name, param in body.named_parameters():
            param.requires_grad_(any(name.startswith(layer) for layer in layers))
        return BackboneWithFPN(
            body,
            {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
            [c // 8, c // 4, c // 2, c],
            cfg.fpn_channels,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=fpn_norm,
        )
    if cfg.backbone == "mobilenet_v3_large":
        body = mobilenet_v3_large(weights=None, norm_layer=norm).features
        first = body[0][0]
        body[0][0] = nn.Conv2d(n_channels, first.out_channels, 3, 2, 1, bias=False)
        # stride 4, 8, 16, 32 stages of MobileNetV3-Large
        stages = {"3": "0", "6": "1", "12": "2", "16": "3"}
        return BackboneWithFPN(
            body, stages, [24, 40, 112, 960], cfg.fpn_channels, LastLevelMaxPool(), fpn_norm
        )
    raise AsmSpotterError(
        Reason.INVALID_ARGUMENT,
        f"torchvision engine: unknown backbone {cfg.backbone!r}; "
        f"choose one of {[*RESNETS, 'mobilenet_v3_large']}",
    )


def build_model(cfg: TrainConfig) -> MaskRCNN:
    """A randomly initialised N-band Mask R-CNN (``init_weights`` loaded when given)."""
    n_channels = len(cfg.bands)
    backbone = _backbone(cfg, n_channels)
    levels = 5  # four FPN outputs plus the max-pool level
    sizes = list(cfg.anchor_sizes)
    if len(sizes) != levels:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, f"anchor_sizes needs {levels} values (one per FPN level)"
        )
    anchors = AnchorGenerator(tuple((int(s),) for s in sizes), (tuple(cfg.aspect_ratios),) * levels)
    mask_head = MaskRCNNHeads(
        cfg.fpn_channels,
        [cfg.fpn_channels] * 4,
        1,
        norm_layer=_norm_layer("GN") if cfg.norm == "GN" else None,
    )
    n_classes = len(cfg.classes) + 1  # + background
    model = MaskRCNN(
        backbone,
        box_head=TwoMLPHead(cfg.fpn_channels * 7 * 7, cfg.box_head_dim),  # 7x7 RoIAlign
        box_predictor=FastRCNNPredictor(cfg.box_head_dim, n_classes),
        mask_predictor=MaskRCNNPredictor(cfg.fpn_channels, cfg.fpn_channels, n_classes),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_topk_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_topk_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_topk_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_topk_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_batch_size_per_image=cfg.roi_batch_size_per_image,
        box_detections_per_img=cfg.detections_per_image,
        box_score_thresh=SCORE_FLOOR,  # fixed: predict filters per call
        mask_head=mask_head,
    )
    model.transform = FixedScaleTransform(cfg.input_scale, n_channels)
    if cfg.init_weights:
        load_init_weights(model, Path(cfg.init_weights), n_channels)
    return model


def load_init_weights(model: nn.Module, path: Path, n_channels: int) -> None:
    """Initial weights from a local file only; RGB first convolutions are spread over N bands."""
    if not path.is_file():
        raise AsmSpotterError(Reason.FILE_NOT_FOUND, "no such initial weights file", str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    if not any(k in own for k in state):  # a bare backbone state dict (e.g. an ImageNet ResNet)
        state = {f"backbone.body.{k}": v for k, v in state.items()}
    adapted = OrderedDict()
    for key, value in state.items():
        if key not in own:
            continue
        if value.shape != own[key].shape and value.ndim == 4 and value.shape[1] == 3:
            value = value.mean(dim=1, keepdim=True).repeat(1, n_channels, 1, 1) * 3 / n_channels
        if value.shape == own[key].shape:
            adapted[key] = value
    if not adapted:
        raise AsmSpotterError(
            Reason.INVALID_ARGUMENT, "initial weights match no layer of the model", str(path)
        )
    model.load_state_dict(adapted, strict=False)


class TorchvisionDetectionModel(DetectionModel):
    def __init__(self, model: MaskRCNN, info: dict, device: str, batch_size: int = 8) -> None:
        self.model = model.to(device).eval()
        self.info = info
        self.device = device
        self.batch_size = batch_size

    @torch.inference_mode()
    def predict(self, images: np.ndarray, score_threshold: float = SCORE_FLOOR) -> list[Instances]:
        x = prepare_input(images, self.info)
        h, w = np.shape(images)[2:]
        out: list[Instances] = []
        for start in range(0, len(x), self.batch_size):
            batch = torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
            for det in self.model(list(batch)):  # eval mode since __init__
                found = Instances(
                    masks=(det["masks"][:, 0] >= MASK_THRESHOLD).cpu().numpy(),
                    scores=det["scores"].float().cpu().numpy(),
                    classes=(det["labels"] - 1).cpu().numpy().astype(np.int64),
                    boxes=det["boxes"].float().cpu().numpy(),
                )
                out.append(found.above(score_threshold).cropped(h, w))
        return out


class TorchvisionEngine(Engine):
    name = "torchvision"
    honours = TrainConfig.field_names() - {"engine_options"}

    def train(
        self, cfg: TrainConfig, data: TrainData, out_dir: Path, resume: bool, num_gpus: int = 1
    ) -> Path:
        from training.train import fit

        self.check_config(cfg)  # several GPUs: started under torchrun (training/cli.py)

        def as_detection_model(model: nn.Module, info: dict, device: str) -> DetectionModel:
            return TorchvisionDetectionModel(model, info, device, batch_size=cfg.batch_size)

        return fit(cfg, data, Path(out_dir), resume, lambda: build_model(cfg), as_detection_model)

    def load(self, bundle_dir: Path, info: dict, device: str) -> DetectionModel:
        cfg = TrainConfig.from_dict(info["config"])
        cfg.init_weights = None
        model = build_model(cfg)
        model.roi_heads.score_thresh = score_floor(info)
        weights = Path(bundle_dir) / info["weights"]
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return TorchvisionDetectionModel(model, info, device)
