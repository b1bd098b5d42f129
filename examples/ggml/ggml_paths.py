"""Print "<include dir> <lib dir>" of the ggml that PyPI's ggml-python installed (for the Makefile).

ggml-python builds ggml from source and installs libggml.so, libggml-base.so and libggml-cpu.so in
the package (site-packages/ggml/lib, what the Python bindings load) and the headers in
site-packages/include (its CMake install prefix is site-packages). Exits non-zero with a hint when
ggml-python or a header is missing.
"""
import os
import sys

try:
    import ggml
except ImportError:
    sys.exit("ggml-python is not installed: pip install ggml-python (or bash .ci/deps.sh)")

pkg = os.path.dirname(os.path.abspath(ggml.__file__))
site = os.path.dirname(pkg)
include = next((d for d in (os.path.join(pkg, "include"), os.path.join(site, "include"),
                            os.path.join(sys.prefix, "include"))
                if os.path.isfile(os.path.join(d, "ggml.h")) and os.path.isfile(os.path.join(d, "ggml-cpu.h"))),
               None)
lib = next((d for d in (os.path.join(pkg, "lib"), os.path.join(site, "lib"))
            if all(os.path.isfile(os.path.join(d, f)) for f in ("libggml.so", "libggml-base.so", "libggml-cpu.so"))),
           None)
if include is None or lib is None:
    sys.exit("ggml-python at %s: ggml.h or libggml*.so not found" % pkg)
print(include, lib)
