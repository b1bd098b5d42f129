#!/usr/bin/env bash
# The wheel as a user gets it (`make test-wheel`, after bindings/python/wheel.sh): a plain virtualenv in a
# temporary folder (no system site-packages), `pip install` of the wheel file alone (numpy comes from the
# package index), then, with the source tree hidden (an empty tmpfs mounted over it in a private mount
# namespace; where that is not allowed, run from /tmp without PYTHONPATH), checks that:
#   - every ELF file of the installed package has only $ORIGIN-relative rpaths;
#   - `import hla` loads libhla from the virtualenv and nothing from the tree; the version prints;
#   - hla.forward agrees with hla.reference (hla2, ahla, hla3; float32, float64; small shapes);
#   - on a CPU without AVX2/FMA (a simulated /proc/cpuinfo) `import hla` raises the ImportError.
# Any failure exits non-zero. Usage: bash Tests/wheel/test_wheel.sh [DIST or WHEEL] (default dist/).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON=${PYTHON:-python3}
ARG=${1:-dist}
case "$ARG" in /*) ;; *) ARG="$ROOT/$ARG" ;; esac
if [ -d "$ARG" ]; then
    wheels=("$ARG"/hla-*manylinux*.whl)
    [ "${#wheels[@]}" = 1 ] && [ -f "${wheels[0]}" ] || {
        echo "test_wheel.sh: expected one hla-*manylinux*.whl in $ARG (make wheel)" >&2; exit 1; }
    WHEEL=${wheels[0]}
else
    WHEEL=$ARG
fi
start=$(date +%s)
TMP=$(mktemp -d /tmp/hla-wheel-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cp "$WHEEL" "$TMP/"
cd "$TMP"
unset PYTHONPATH PYTHONHOME HLA_SKIP_CPU_CHECK HLA_CPUINFO

"$PYTHON" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check "$TMP/$(basename "$WHEEL")"
echo "test_wheel.sh: installed $(basename "$WHEEL") into a fresh virtualenv ($(( $(date +%s) - start )) s)"
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("platlib"))')

# Every ELF file the wheel installed: rpaths relative to $ORIGIN only.
nelf=0
while IFS= read -r -d '' f; do
    head -c 4 "$f" | grep -q 'ELF' || continue
    nelf=$((nelf + 1))
    rp=$(readelf -d "$f" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
    echo "  $(basename "$f"): rpath ${rp:-none}"
    IFS=: read -r -a parts <<<"$rp"
    for p in "${parts[@]}"; do
        case "$p" in '$ORIGIN'*) ;; *) echo "test_wheel.sh: $f has rpath entry '$p'" >&2; exit 1 ;; esac
    done
done < <(find "$SITE/hla" "$SITE"/hla.libs -type f -print0 2>/dev/null)
[ "$nelf" -ge 2 ] || { echo "test_wheel.sh: expected the extension and libhla in $SITE/hla" >&2; exit 1; }

cat > "$TMP/check.py" <<'PY'
import os, sys
import numpy as np
import hla

tree, venv = sys.argv[1], sys.prefix
maps = sorted({l.split()[-1] for l in open("/proc/self/maps") if ".so" in l.split()[-1]})
libhla = [m for m in maps if os.path.basename(m).startswith("libhla")]
print("hla %s (library %s) from %s" % (hla.__version__, hla.library_version(), os.path.dirname(hla.__file__)))
print("libhla loaded from", libhla)
assert hla.__file__.startswith(venv + os.sep), hla.__file__
assert len(libhla) == 1 and libhla[0].startswith(venv + os.sep), libhla
inside = [m for m in maps if m.startswith(tree + os.sep)]
assert not inside, "objects loaded from the source tree: %s" % inside
site = os.path.dirname(os.path.dirname(os.path.abspath(hla.__file__)))
ours = [m for m in maps if m.startswith((os.path.join(site, "hla") + os.sep, os.path.join(site, "hla.libs")))]
print("loaded from the wheel:", ", ".join(os.path.relpath(m, site) for m in ours))
# libhla and what auditwheel bundled (OpenBLAS and its Fortran runtime, while libhla links them) come
# from the wheel, never from the system.
system = [m for m in maps if not m.startswith(venv + os.sep) and os.path.basename(m).startswith(
    ("libhla", "libopenblas", "libblas", "libcblas", "libgfortran", "libquadmath"))]
assert not system, "loaded from outside the wheel: %s" % system

rng = np.random.default_rng(0)
worst = 0.0
for op in ("hla2", "ahla", "hla3"):
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        B, T, H, Hkv, dk, dv = 2, (17 if op == "hla3" else 45), 4, 2, 16, 8
        q = rng.standard_normal((B, T, H, dk)).astype(dtype)
        k = rng.standard_normal((B, T, Hkv, dk)).astype(dtype)
        v = rng.standard_normal((B, T, Hkv, dv)).astype(dtype)
        opts = dict(op=op, decay=0.95, scale=dk ** -0.5)
        o, st = hla.forward(q, k, v, output_final_state=True, chunk_size=8, **opts)
        r = hla.reference(q, k, v, **opts)
        err = float(np.max(np.abs(o - r)) / np.max(np.abs(r)))
        worst = max(worst, err / tol)
        print("  %-4s %-7s forward vs reference: %.2e (tolerance %.0e)" % (op, np.dtype(dtype).name, err, tol))
        assert o.shape == (B, T, H, dv) and o.dtype == dtype and err <= tol, (op, dtype, err)
print("parity: 6 passed, 0 failed")
PY

cat > "$TMP/fakecpu.py" <<'PY'
import sys
try:
    import hla
except ImportError as e:
    print("ImportError as expected:", e)
    assert "AVX2" in str(e) and "hla._hla" not in sys.modules, e
    raise SystemExit(0)
raise SystemExit("import hla succeeded on a simulated CPU without AVX2/FMA")
PY
printf 'processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx\n' > "$TMP/cpuinfo-old"

run_checks() {
    "$VPY" "$TMP/check.py" "$ROOT"
    HLA_CPUINFO="$TMP/cpuinfo-old" "$VPY" "$TMP/fakecpu.py"
}

# Hide the tree: an empty read-only tmpfs over it, in a mount namespace of this command only.
mkdir "$TMP/probe"
if unshare --mount --propagation private mount -t tmpfs -o size=1m tmpfs "$TMP/probe" 2>/dev/null; then
    export -f run_checks
    export VPY TMP ROOT
    unshare --mount --propagation private bash -c \
        'set -euo pipefail; mount -t tmpfs -o ro,size=1m tmpfs "$ROOT"
         [ -z "$(ls -A "$ROOT")" ] || { echo "test_wheel.sh: tree still visible" >&2; exit 1; }
         echo "test_wheel.sh: source tree $ROOT hidden (empty tmpfs over it)"
         run_checks'
else
    echo "test_wheel.sh: cannot hide the tree (no mount namespace): running from $TMP without PYTHONPATH"
    run_checks
fi
echo "test_wheel.sh: wheel OK ($(( $(date +%s) - start )) s)"
