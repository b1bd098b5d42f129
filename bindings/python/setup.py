"""Build script of the `hla` Python package (C extension hla._hla over libhla.so).

Where libhla is looked for, in order:
  library dir:  $LIBHLA_LIBDIR, else `pkg-config --libs-only-L hla`, else ../../.build/release
  include dir:  $LIBHLA_INCLUDEDIR, else `pkg-config --cflags-only-I hla`, else ../../include
Where the extension finds libhla at run time:
  in-place builds (`setup.py build_ext --inplace`, `make python`): an rpath to the library dir;
  every other build (`pip install`, `pip wheel`): libhla.so is copied into the package (hla/libhla.so,
  debug info stripped) and the rpath is $ORIGIN, so the installed package does not depend on the
  build tree. HLA_BUNDLE_LIBRARY=0 links to the library dir instead (e.g. a `make install`ed libhla),
  HLA_BUNDLE_LIBRARY=1 bundles in place too.
No LD_LIBRARY_PATH is needed either way.

hla.jax's XLA FFI handlers (src/jax_ffi.cc -> hla/_hla_jax_ffi.so, linked to libhla like the extension)
are built only when `import jax` works in the Python running this script (they compile against the
XLA FFI headers jaxlib ships, jax.ffi.include_dir()); without JAX, or with HLA_JAX_FFI=0, they are
skipped, and a failure to build them is a warning (optional extension), never an error. pip's isolated
builds do not see an installed JAX: use `pip install --no-build-isolation` for hla.jax.
"""
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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
    sources=["src/%s.c" % name for name in ("module", "convert", "config", "errors", "ops", "pool", "lock")],
    depends=["src/ext.h", "src/dlpack_abi.h"],
    include_dirs=include_dirs_and_args() + [numpy_include(), os.path.join(HERE, "src")],
    library_dirs=[libdir],
    libraries=["hla"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
)


JAX_FFI = "hla._hla_jax_ffi"


def jax_ffi_include():
    """jaxlib's XLA FFI header directory, or None (JAX absent, or HLA_JAX_FFI=0)."""
    if os.environ.get("HLA_JAX_FFI", "").strip() in ("0", "no", "false"):
        return None
    try:
        import jax.ffi
    except Exception:   # not installed, or broken: hla.jax is optional
        return None
    d = jax.ffi.include_dir()
    return d if os.path.exists(os.path.join(d, "xla", "ffi", "api", "ffi.h")) else None


extensions = [ext]
_jax_include = jax_ffi_include()
if _jax_include:
    extensions.append(Extension(
        JAX_FFI,
        sources=["src/jax_ffi.cc"],
        include_dirs=include_dirs_and_args(),
        library_dirs=[libdir],
        libraries=["hla"],
        language="c++",
        # -isystem: the XLA headers' own warnings are not ours. -z now: a libhla without a symbol
        # the handlers call fails when hla.jax loads them (ImportError), not in the middle of a call.
        extra_compile_args=["-std=c++17", "-O2", "-g0", "-Wall", "-Wextra", "-isystem", _jax_include],
        extra_link_args=["-Wl,-z,now"],
        optional=True,
    ))
else:
    sys.stderr.write("setup.py: JAX not importable (or HLA_JAX_FFI=0): hla.jax's FFI library is not "
                     "built\n")


def bundle_library(inplace):
    """Whether libhla.so goes into the package (rpath $ORIGIN) rather than being linked where it is."""
    v = os.environ.get("HLA_BUNDLE_LIBRARY", "").strip()
    if v:
        return v not in ("0", "no", "false")
    return not inplace


class BuildExt(build_ext):
    """build_ext that sets the extension's rpath and, when bundling, copies libhla.so beside it."""

    def run(self):
        # setuptools builds an in-place extension in build_lib too (inplace is 0 meanwhile), then
        # copies it into the sources: decide here, and copy the library along.
        self.bundle = bundle_library(self.inplace)
        super().run()
        if self.bundle and self.inplace:
            package_dir = self.get_finalized_command("build_py").get_package_dir("hla")
            self.copy_library(os.path.join(package_dir, "libhla.so"))

    def get_ext_filename(self, fullname):
        # The FFI handler library is loaded with ctypes, not imported: a plain name hla.jax finds.
        # (distutils passes the full name or only its last part, depending on the caller.)
        if fullname in (JAX_FFI, JAX_FFI.split(".")[-1]):
            return os.path.join(*fullname.split(".")) + ".so"
        return super().get_ext_filename(fullname)

    def get_export_symbols(self, ext):
        return [] if ext.name == JAX_FFI else super().get_export_symbols(ext)

    def build_extensions(self):
        for e in self.extensions:
            e.runtime_library_dirs = ["$ORIGIN"] if self.bundle else [libdir]
        if self.bundle:
            # A build directory may hold an extension linked with another rpath: relink always.
            self.force = True
            # $ORIGIN only: no rpath of the build machine's Python (a pyenv build puts its lib dir in
            # LDSHARED) travels with the package.
            self.compiler.linker_so = [a for a in self.compiler.linker_so
                                       if not a.startswith(("-Wl,-rpath", "-Wl,-R"))]
        super().build_extensions()
        if self.bundle:
            ext_dir = os.path.dirname(self.get_ext_fullpath("hla._hla"))
            self.copy_library(os.path.join(ext_dir, "libhla.so"))

    def copy_library(self, dst):
        src = os.path.join(libdir, "libhla.so")
        if not os.path.exists(src):
            raise SystemExit("setup.py: libhla.so not found in %s (set LIBHLA_LIBDIR or run `make lib`)"
                             % libdir)
        self.mkpath(os.path.dirname(dst) or ".")
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)
        # DWARF debug info off the bundled copy, as `make install` does.
        try:
            subprocess.run(["strip", "--strip-debug", dst], check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            sys.stderr.write("setup.py: warning: could not strip %s (%s)\n" % (dst, e))
        sys.stderr.write("setup.py: bundled %s as %s (rpath $ORIGIN)\n" % (src, dst))


def numpy_requirement():
    """An extension built against numpy 2 headers runs on numpy >= 1.23 (their default
    NPY_TARGET_VERSION); one built against numpy 1 does not run on numpy 2."""
    import numpy

    major = int(numpy.__version__.split(".")[0])
    return "numpy>=1.23" if major >= 2 else "numpy>=%s,<2" % numpy.__version__.split("+")[0]


with open(os.path.join(HERE, "README.md")) as f:
    long_description = f.read()

setup(
    name="hla",
    version=header_version(),
    description="Higher-order Linear Attention (HLA): Python bindings of libhla",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=["hla"],
    ext_modules=extensions,
    cmdclass={"build_ext": BuildExt},
    install_requires=[numpy_requirement()],
    extras_require={"bfloat16": ["ml_dtypes"], "torch": ["torch"], "jax": ["jax"], "mpi": ["mpi4py"]},
    python_requires=">=3.8",
    zip_safe=False,
)
