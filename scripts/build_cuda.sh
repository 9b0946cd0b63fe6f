#!/usr/bin/env bash
# Builds the CUDA binary: `cargo build --release --features cuda`, with what that needs.
#
# With a CUDA toolkit installed (nvcc on PATH or in $CUDA_HOME/bin) and an NVIDIA driver, this is
# only the cargo command. Without them (a build machine with no GPU), it fetches the CUDA 13.0
# toolkit parts from PyPI into ~/.cache/vaewatch/cuda-13.0 (nvcc and the libraries the binary
# links: cuBLAS, cuRAND, NVRTC, the CUDA runtime) and links against a stand-in for the driver
# library, which only names its functions: the real one is loaded on the GPU machine.
#
# CUDA 13.0 matches driver 580; PTX built by a newer toolkit does not load on an older driver,
# so set CUDA_WHEELS_VERSION to the driver's CUDA version. CUDA_COMPUTE_CAP defaults to 90
# (H100/H200) when nvidia-smi is absent. The binary lands in $CARGO_TARGET_DIR (or target)/release.
#
# Usage: scripts/build_cuda.sh [extra cargo arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nvidia-smi >/dev/null; then
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
fi

if ! command -v nvcc >/dev/null && [[ ! -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ]]; then
    version=${CUDA_WHEELS_VERSION:-13.0}
    curand=${CUDA_WHEELS_CURAND:-10.4.0}
    cache="$HOME/.cache/vaewatch/cuda-$version"
    root="$cache/nvidia/cu${version%%.*}"
    if [[ ! -x "$root/bin/nvcc" ]]; then
        echo "build_cuda: fetching the CUDA $version toolkit parts from PyPI into $cache" >&2
        python3 -m pip install --quiet --no-deps --target "$cache" \
            "nvidia-cuda-nvcc==$version.*" "nvidia-nvvm==$version.*" \
            "nvidia-cuda-crt==$version.*" "nvidia-cuda-runtime==$version.*" \
            "nvidia-cuda-cccl==$version.*" "nvidia-cublas==$version.*" \
            "nvidia-cuda-nvrtc==$version.*" "nvidia-curand==$curand.*"
    fi
    # The linker looks for unversioned names.
    for lib in cudart nvrtc curand cublas cublasLt; do
        file=$(find "$root/lib" -maxdepth 1 -name "lib$lib.so.*" ! -name "*alt*" ! -name "*builtins*" | head -1)
        ln -sf "$(basename "$file")" "$root/lib/lib$lib.so"
    done
    if [[ ! -f "$root/lib/stubs/libcuda.so" ]]; then
        # The wheels carry no driver library to link against: a stand-in that defines the
        # driver API's function names (from cudarc's bindings), with the driver's soname, so
        # the real driver library is the one loaded at run time.
        mkdir -p "$root/lib/stubs"
        cargo fetch --quiet
        bindings=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path "*cudarc-*/src/driver/sys/mod.rs" | sort | tail -1)
        grep -oE "^pub unsafe fn cu[A-Za-z0-9_]+" "$bindings" | sed -E 's/pub unsafe fn //' | sort -u |
            sed 's/.*/int &(void) { return 999; }/' > "$root/lib/stubs/driver_stub.c"
        cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/driver_stub.c"
    fi
    # cudarc's build script looks for libraries in $CUDA_HOME/lib and $CUDA_HOME/lib/stubs.
    export CUDA_HOME=$root CUDA_PATH=$root PATH="$root/bin:$PATH"
fi

# A target folder of its own: the cuda feature rebuilds candle, and the CPU build's cache stays.
export CARGO_TARGET_DIR=${VAEWATCH_CUDA_TARGET_DIR:-target/cuda}
cargo build --release --features cuda "$@"
echo "build_cuda: $CARGO_TARGET_DIR/release/vaewatch (check it on a GPU machine with scripts/cuda_check.sh)" >&2
