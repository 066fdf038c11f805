#!/usr/bin/env bash
# Installs, idempotently, the pinned CUDA compiler and libclang that build.rs
# uses, from the Python package index, into a per-user directory outside the
# repository:
#
#   ${TK_TOOLCHAIN_DIR:-~/.cache/transformer-kernels/toolchain}
#     nvidia/cu13/bin/nvcc            nvcc 13.0.88 (+ crt, nvvm, cccl, runtime headers)
#     nvidia/cu13/bin/cuobjdump       read-only tools to inspect SASS without a GPU
#     nvidia/cu13/bin/nvdisasm
#     clang/native/libclang.so        libclang for bindgen
#
# nvcc stays at 13.0: the H200 we test on has driver 580, which cannot load
# PTX from a newer compiler. cuobjdump / nvdisasm only read fatbins, so any
# 13.x release works for them.
#
# A second run with everything present finishes in well under a second.
# Prints the toolchain directory on its last line.
set -euo pipefail

TK_TOOLCHAIN_DIR="${TK_TOOLCHAIN_DIR:-$HOME/.cache/transformer-kernels/toolchain}"

# Package pins: name==version. Bump together; the stamp below records them.
PINS=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-cccl==13.0.85"
  "nvidia-cuda-runtime==13.0.88"
  "nvidia-cuda-cuobjdump==13.2.86"
  "nvidia-cuda-nvdisasm==13.2.86"
  "libclang==18.1.1"
)
STAMP="$TK_TOOLCHAIN_DIR/.installed"
WANT="$(printf '%s\n' "${PINS[@]}")"

NVCC="$TK_TOOLCHAIN_DIR/nvidia/cu13/bin/nvcc"
LIBCLANG="$TK_TOOLCHAIN_DIR/clang/native/libclang.so"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$NVCC" && -f "$LIBCLANG" ]]; then
  echo "setup-toolchain: already installed" >&2
  echo "$TK_TOOLCHAIN_DIR"
  exit 0
fi

PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [[ -z "$PYTHON" ]]; then
  echo "setup-toolchain: python3 with pip is needed to install nvcc from the package index" >&2
  exit 1
fi
# nvcc drives the host compiler; fail early with a clear message if there is none.
if ! command -v g++ >/dev/null 2>&1; then
  echo "setup-toolchain: g++ is needed as nvcc's host compiler (Debian: apt-get install g++)" >&2
  exit 1
fi

echo "setup-toolchain: installing ${PINS[*]} into $TK_TOOLCHAIN_DIR" >&2
TMP="$(mktemp -d "${TK_TOOLCHAIN_DIR%/}.tmp.XXXXXX" 2>/dev/null || mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
  --target "$TMP" "${PINS[@]}" >&2

# Swap in atomically-enough: a half-finished install never looks complete.
rm -rf "$TK_TOOLCHAIN_DIR"
mkdir -p "$(dirname "$TK_TOOLCHAIN_DIR")"
mv "$TMP" "$TK_TOOLCHAIN_DIR"
trap - EXIT

"$NVCC" --version | tail -n 2 >&2
test -f "$LIBCLANG"
echo "$WANT" > "$STAMP"
echo "$TK_TOOLCHAIN_DIR"
