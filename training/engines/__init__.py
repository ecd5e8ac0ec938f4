"""Engines behind one interface: see ``training.engines.base``."""

from training.engines.base import DetectionModel, Engine, Instances, get_engine

__all__ = ["DetectionModel", "Engine", "Instances", "get_engine"]
