#!/usr/bin/env bash
# Set up glnet on a fresh Debian/Ubuntu machine (with or without a GPU or a screen):
#   1. the system OpenGL/EGL libraries (Mesa's software renderer when there is no GPU driver) and Xvfb;
#   2. PyTorch: an installed build is kept; otherwise torch==2.13.0, never a CUDA build on a machine without
#      an NVIDIA GPU (pip's plan is checked first, and the CPU index used if PyPI would bring CUDA);
#   3. torchvision matching that torch, from the same place (PyTorch's CPU index for a +cpu torch, since PyPI's
#      torchvision is a CUDA build; PyPI's wheel when that index is unreachable, glnet declaring its missing
#      ops itself), then glnet itself (editable) with its test tools and the `peers` extra
#      (the bench's pygfx peer; it draws through Vulkan: Mesa's lavapipe, from mesa-vulkan-drivers, on a CPU).
# Installs into the Python that runs it (python3, or $PYTHON); activate a virtualenv first to keep it there.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TORCH_VERSION=${GLNET_TORCH_VERSION:-2.13.0}
CPU_INDEX=${GLNET_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
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
      extra=(--index-url "$CPU_INDEX")
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
  base=${torch_version%%+*}
  IFS=. read -r major minor patch _ <<<"$base"
  # torch 2.N.P pairs with torchvision 0.(N+15).P (2.13.0 with 0.28.0)
  if [ "${major:-}" = 2 ] && [ -n "${minor:-}" ]; then tv="==0.$((minor + 15)).${patch:-0}"; fi
  from_cpu_index=""
  case "$torch_version" in
    *+cpu*)
      # PyPI's torchvision is a CUDA build whose ops do not load beside a CPU torch: take the CPU index's
      # (its own +cpu version, which no PyPI mirror or find-links folder has), with a short timeout, since an
      # offline machine (a local PyPI mirror only) cannot reach it.
      if "$PY" -m pip install -q --timeout 15 --retries 0 -c "$constraints" --index-url "$CPU_INDEX" \
        "torchvision$tv${tv:++cpu}" 2>/dev/null; then
        from_cpu_index=1
        say "torchvision$tv+cpu from the PyTorch CPU index, matching torch $torch_version"
      else
        say "PyTorch's CPU index is unreachable: taking PyPI's torchvision$tv (glnet declares its missing ops)"
      fi
      ;;
  esac
  [ -n "$from_cpu_index" ] || "$PY" -m pip install -q -c "$constraints" "torchvision$tv"
fi
"$PY" -m pip install -q -c "$constraints" -e ".[test,peers]"
say "done: torch $torch_version; run 'python3 -m glnet info' to see the OpenGL driver"
