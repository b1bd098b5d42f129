#!/usr/bin/env bash
# Install what building and testing libhla needs on a fresh Debian machine with Swift, gcc and Python:
# OpenBLAS (CBLAS), the Python headers, pkg-config, valgrind; numpy, pytest and hypothesis from PyPI.
set -euo pipefail
PYTHON=${PYTHON:-python3}
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
"$PYTHON" - <<'PY' || "$PYTHON" -m pip install -q --disable-pip-version-check numpy pytest hypothesis setuptools
import numpy, pytest, hypothesis, setuptools
PY
