"""The model interface the service and evaluation import: ``load_bundle`` -> ``DetectionModel``."""

from training.bundle import load_bundle, read_info
from training.engines.base import DetectionModel, Instances

__all__ = ["DetectionModel", "Instances", "load_bundle", "read_info"]
