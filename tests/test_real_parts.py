"""A missing real part skips on a developer's machine and fails under CI, through one rule
(tests/real_parts.py); no test skips on its own (it did for PostGIS, Chromium, shared data,
kubectl...). Only hardware CI never has (a CUDA device) may skip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.real_parts import missing, require_module

TESTS = Path(__file__).resolve().parent
HARDWARE = ("no CUDA device here", "this machine has two GPUs")


def test_missing_part_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        missing("PostGIS")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostGIS"):
        missing("PostGIS")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_here"):
        require_module("no_such_module_here")


def test_no_test_skips_a_real_part_by_itself():
    own = re.compile(r"pytest\.skip\(|importorskip\(|mark\.skipif\(")
    offenders = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(TESTS.glob("*.py"))
        if path.name not in ("real_parts.py", Path(__file__).name)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line) and not any(reason in line for reason in HARDWARE)
    ]
    assert not offenders, offenders


def test_system_packages_script_fails_under_ci_when_it_cannot_install():
    text = (TESTS / "setup" / "system_packages.sh").read_text()
    assert "CI" in text and "exit 1" in text
