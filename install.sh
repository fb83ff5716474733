#!/usr/bin/env bash
# Set up glnet on a fresh Debian/Ubuntu machine (with or without a GPU or a screen):
#   1. the system OpenGL/EGL libraries (Mesa's software renderer when there is no GPU driver) and Xvfb;
#   2. PyTorch: an installed build is kept; otherwise torch==2.13.0, never a CUDA build on a machine without
#      an NVIDIA GPU (pip's plan is checked first, and the CPU index used if PyPI would bring CUDA);
#   3. torchvision matching that torch, then glnet itself (editable) with its test tools and the `peers` extra
#      (the bench's pygfx peer; it draws through Vulkan: Mesa's lavapipe, from mesa-vulkan-drivers, on a CPU).
# Installs into the Python that runs it (python3, or $PYTHON); activate a virtualenv first to keep it there.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_VERSION=${GLNET_TORCH_VERSION:-2.13.0}
say() { printf 'install.sh: %s\n' "$*" >&2; }

# -- 1. system libraries ------------------------------------------------------------------------------------
pkgs="libegl1 libgl1 libgl1-mesa-dri libegl-mesa0 libosmesa6 xvfb xauth xdotool mesa-vulkan-drivers"
missing=""
for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if ! command -v apt-get >/dev/null; then
    say "missing system packages:$missing (no apt-get here: install the equivalent OpenGL/EGL libraries yourself)"
  else
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing system packages:$missing"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
fi

# -- 2. torch -------------------------------------------------------------------------------------------------
if "$PY" -c "import torch" 2>/dev/null; then
  say "keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  extra=()
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    plan=$("$PY" -m pip install --dry-run --quiet --report - "torch==$TORCH_VERSION" 2>/dev/null || true)
    if printf '%s' "$plan" | grep -q '"name": "nvidia-'; then
      say "no NVIDIA GPU: taking the CPU build of torch instead of PyPI's CUDA build"
      extra=(--index-url https://download.pytorch.org/whl/cpu)
    fi
  fi
  "$PY" -m pip install -q "${extra[@]}" "torch==$TORCH_VERSION"
fi
torch_version=$("$PY" -c 'import torch; print(torch.__version__)')

# -- 3. torchvision and glnet ---------------------------------------------------------------------------------
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" >"$constraints"  # nothing below may replace the torch chosen above
if ! "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then
  tv=""
  case "$torch_version" in 2.13.*) tv="==0.28.0" ;; esac
  "$PY" -m pip install -q -c "$constraints" "torchvision$tv"
fi
"$PY" -m pip install -q -c "$constraints" -e ".[test,peers]"
say "done: torch $torch_version; run 'python3 -m glnet info' to see the OpenGL driver"
