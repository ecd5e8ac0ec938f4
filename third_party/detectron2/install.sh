#!/usr/bin/env bash
# Install Detectron2 0.6 into the environment of PYTHON, from the pb1-detectron2 sdist (the only
# Detectron2 release on the package registry): download it (hash-checked), apply
# detectron2-0.6.patch (no C++ extension needed, numpy 2 / Pillow 10+ / no pkg_resources), install
# it --no-deps (its runtime needs are in pyproject.toml's `train` extra).
#
# Usage: bash third_party/detectron2/install.sh PYTHON
# Idempotent: exits at once when the installed copy carries this patch's sha256.
# DETECTRON2_CACHE (default ~/.cache/asmspotter/detectron2) keeps the downloaded sdist.
set -euo pipefail

PYTHON="${1:?usage: install.sh PYTHON}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PATCH="$HERE/detectron2-0.6.patch"
SDIST_NAME="pb1-detectron2-0.6.tar.gz"
SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
CACHE="${DETECTRON2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/asmspotter/detectron2}"

PATCH_SHA256="$(sha256sum "$PATCH" | cut -d' ' -f1)"

# Fast path: the patched copy is already installed (the marker module records the patch hash).
# Read the marker without importing detectron2 (that would pull in torch).
installed="$("$PYTHON" - <<'EOF' 2>/dev/null || true
import importlib.util, pathlib
spec = importlib.util.find_spec("detectron2")
marker = pathlib.Path(spec.origin).parent / "_asmspotter_patch.py" if spec and spec.origin else None
if marker and marker.is_file():
    for line in marker.read_text().splitlines():
        if line.startswith("PATCH_SHA256"):
            print(line.split("=")[1].strip().strip('"'))
EOF
)"
if [[ "$installed" == "$PATCH_SHA256" ]]; then
    echo "detectron2: patched 0.6 already installed (patch ${PATCH_SHA256:0:12})"
    exit 0
fi

mkdir -p "$CACHE"
sdist="$CACHE/$SDIST_NAME"
if [[ ! -f "$sdist" ]] || [[ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$SDIST_SHA256" ]]; then
    rm -f "$sdist"
    echo "detectron2: downloading pb1-detectron2==0.6"
    # --no-build-isolation: the sdist's setup.py imports torch to compute its metadata.
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$CACHE" "pb1-detectron2==0.6"
fi
actual="$(sha256sum "$sdist" | cut -d' ' -f1)"
if [[ "$actual" != "$SDIST_SHA256" ]]; then
    echo "detectron2: sha256 mismatch for $sdist" >&2
    echo "  expected $SDIST_SHA256" >&2
    echo "  got      $actual" >&2
    rm -f "$sdist"
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$sdist" -C "$work"
src="$work/pb1-detectron2-0.6"
if command -v patch >/dev/null; then
    patch -p1 --quiet --forward -d "$src" <"$PATCH"
else  # slim images may lack patch(1); git applies the same unified diff
    (cd "$src" && git apply -p1 "$PATCH")
fi
printf '# Written by third_party/detectron2/install.sh: the patch this copy was built with.\nPATCH_SHA256 = "%s"\n' \
    "$PATCH_SHA256" >"$src/detectron2/_asmspotter_patch.py"

echo "detectron2: installing patched 0.6"
"$PYTHON" -m pip install -q --no-deps --no-build-isolation "$src"
"$PYTHON" -c "from detectron2 import model_zoo; model_zoo.get_config_file('Base-RCNN-FPN.yaml')"
echo "detectron2: installed (patch ${PATCH_SHA256:0:12})"
