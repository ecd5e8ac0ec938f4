"""The layering is a test: the geo core, labelling and the client SDK import with torch blocked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service_support import BLOCK_TORCH

REPO = Path(__file__).resolve().parents[1]
TORCH_FREE = ("imagery", "labeling", "service.client")


def test_imagery_labeling_and_the_sdk_import_without_torch():
    """Every module of these packages (sub-packages included) imports, and none pulls torch in."""
    code = BLOCK_TORCH + (
        "import importlib, pkgutil\n"
        f"names = []\nfor top in {TORCH_FREE!r}:\n"
        "    pkg = importlib.import_module(top)\n"
        "    names.append(top)\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "        names.append(info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not bad, bad\n"
        "print(len(names), ' '.join(names))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    count, names = run.stdout.split(" ", 1)
    names = names.split()
    assert "imagery.scene" in names and "labeling.predict" in names
    assert "service.client.sync" in names
    assert int(count) == len(names) >= 40
