"""The one rule for a real part a test needs (shared data, PostgreSQL + PostGIS, Chromium, Label
Studio, kubectl, Detectron2, openssl...): absent, it skips on a developer's machine and FAILS under
CI (``CI`` set, as ``.ci/run`` runs), where ``make test`` installs every part."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) because ``what`` is absent."""
    if on_ci():
        pytest.fail(f"{what} (CI installs every real part: make test)", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def require_module(name: str, why: str = "") -> ModuleType:
    """``import name``, or ``missing`` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed{': ' + why if why else ''}")
