"""Build script of the `hla` Python package (C extension hla._hla over libhla.so).

Where libhla is looked for, in order:
  library dir:  $LIBHLA_LIBDIR, else `pkg-config --libs-only-L hla`, else ../../.build/release
  include dir:  $LIBHLA_INCLUDEDIR, else `pkg-config --cflags-only-I hla`, else ../../include
An rpath to the library dir is set, so `import hla` works without LD_LIBRARY_PATH.
"""
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.normpath(os.path.join(HERE, "..", ".."))


def _pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, "hla"], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return shlex.split(out)


def _from_pkg_config(flag, prefix):
    toks = _pkg_config(flag)
    if not toks:
        return None
    dirs = [t[len(prefix):] for t in toks if t.startswith(prefix)]
    return dirs[0] if dirs else None


def library_dir():
    d = os.environ.get("LIBHLA_LIBDIR")
    if d:
        return os.path.abspath(d)
    d = _from_pkg_config("--libs-only-L", "-L")
    if d:
        return d
    return os.path.join(TREE, ".build", "release")


def include_dirs_and_args():
    """Include directories: the one holding hla.h."""
    d = os.environ.get("LIBHLA_INCLUDEDIR")
    if not d:
        d = _from_pkg_config("--cflags-only-I", "-I")
    if not d:
        d = os.path.join(TREE, "include")
    d = os.path.abspath(d)
    if not os.path.exists(os.path.join(d, "hla.h")):
        sys.stderr.write("setup.py: warning: hla.h not found in %s (set LIBHLA_INCLUDEDIR)\n" % d)
    return [d]


def header_version():
    """MAJOR.MINOR.PATCH from the HLA_VERSION_* macros of hla.h (the single source of truth)."""
    parts = {}
    for d in include_dirs_and_args():
        path = os.path.join(d, "hla.h")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                toks = line.split()
                if len(toks) >= 3 and toks[0] == "#define" and toks[1].startswith("HLA_VERSION_"):
                    parts[toks[1][len("HLA_VERSION_"):]] = toks[2]
        break
    try:
        return "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])
    except KeyError:
        sys.stderr.write("setup.py: warning: HLA_VERSION_* not found in hla.h\n")
        return "0.0.0"


def numpy_include():
    import numpy

    return numpy.get_include()


libdir = library_dir()
if not os.path.exists(os.path.join(libdir, "libhla.so")):
    sys.stderr.write("setup.py: warning: libhla.so not found in %s (set LIBHLA_LIBDIR, run "
                     "`make lib`, or `make install` for pkg-config)\n" % libdir)

ext = Extension(
    "hla._hla",
    sources=["src/%s.c" % name for name in ("module", "convert", "config", "errors", "ops")],
    depends=["src/ext.h", "src/dlpack_abi.h"],
    include_dirs=include_dirs_and_args() + [numpy_include(), os.path.join(HERE, "src")],
    library_dirs=[libdir],
    libraries=["hla"],
    runtime_library_dirs=[libdir],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
)

with open(os.path.join(HERE, "README.md")) as f:
    long_description = f.read()

setup(
    name="hla",
    version=header_version(),
    description="Higher-order Linear Attention (HLA): Python bindings of libhla",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=["hla"],
    ext_modules=[ext],
    install_requires=["numpy"],
    extras_require={"bfloat16": ["ml_dtypes"], "torch": ["torch"], "jax": ["jax"]},
    python_requires=">=3.8",
    zip_safe=False,
)
