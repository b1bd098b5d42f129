#!/usr/bin/env bash
# Install what building and testing libhla needs on a fresh Debian machine with Swift, gcc and Python:
# OpenBLAS (CBLAS), the Python headers, pkg-config, valgrind; from PyPI numpy, pytest, hypothesis,
# setuptools, ml_dtypes (bfloat16 numpy arrays) and jax; torch as the CPU wheel of pip's configured local
# wheel folder (`pip install --no-index torch`: plain `pip install torch` would pull a multi-GB CUDA build).
set -euo pipefail
PYTHON=${PYTHON:-python3}
PIP="$PYTHON -m pip install -q --disable-pip-version-check"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
need_apt=0
for p in libopenblas-dev python3-dev pkg-config valgrind; do
    dpkg -s "$p" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libopenblas-dev python3-dev pkg-config valgrind >/dev/null
fi
"$PYTHON" - <<'PY' || $PIP numpy pytest hypothesis setuptools ml_dtypes jax
import numpy, pytest, hypothesis, setuptools, ml_dtypes, jax
PY
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    # The local folder may hold only the torch wheel: its pure-Python dependencies come from PyPI.
    $PIP --no-index torch 2>/dev/null || {
        $PIP filelock "typing-extensions>=4.10.0" "setuptools>=77.0.3" "sympy>=1.13.3" "networkx>=2.5.1" \
            jinja2 "fsspec>=0.8.5"
        $PIP --no-index torch
    }
fi
