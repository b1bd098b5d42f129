# libhla — see README.md. `make` builds the library and the Python extension; `make test` runs every suite.
PREFIX ?= /usr/local
SWIFT ?= swift
PYTHON ?= python3
# Release build: Swift runtime linked statically; AVX2/FMA code (HLA_TARGET_CPU= for a generic x86-64 build).
HLA_TARGET_CPU ?= haswell
SWIFT_FLAGS = -c release -Xswiftc -static-stdlib $(if $(HLA_TARGET_CPU),-Xswiftc -target-cpu -Xswiftc $(HLA_TARGET_CPU))
# Scratch directory of the release library (`make wheel BUILD_DIR=.build-x` builds it elsewhere).
BUILD_DIR ?= .build
LIBDIR := $(CURDIR)/$(BUILD_DIR)/release
LIB := $(LIBDIR)/libhla.so
export LIBHLA_LIBDIR := $(LIBDIR)
# The version, from the single source of truth (HLA_VERSION_* in Sources/CHLA/include/hla_types.h).
HLA_VERSION := $(shell awk '/define HLA_VERSION_(MAJOR|MINOR|PATCH)/ {v = v (v ? "." : "") $$3} END {print v}' Sources/CHLA/include/hla_types.h)

.PHONY: all lib python jax-ffi header check-header test test-builds test-swift test-c test-examples test-python test-mpi test-ggml tsan tsan-lib install demo bench clean deps wheel test-wheel train-demo

all: lib python

# System and Python packages (apt-get, pip), installed once per machine.
DEPS_STAMP := build/.deps-installed
deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/deps.sh
	bash .ci/deps.sh
	mkdir -p build && touch $@

lib: $(DEPS_STAMP)
	$(SWIFT) build $(SWIFT_FLAGS) --product hla --scratch-path $(BUILD_DIR)

header: lib
	$(PYTHON) .ci/genheader.py --write

check-header: lib
	$(PYTHON) .ci/genheader.py --check

python: lib
	cd bindings/python && $(PYTHON) setup.py -q build_ext --inplace

# hla.jax's XLA FFI handlers alone (bindings/python/src/jax_ffi.cc -> $(JAX_FFI_OUT)/_hla_jax_ffi.so,
# rpath to $(LIBDIR)), against the XLA FFI headers jaxlib ships. `make python` builds the same library
# through setup.py whenever `import jax` works; without JAX this target says so and succeeds.
# JAX_FFI_DEPS= LIBDIR=<dir of libhla.so> JAX_FFI_OUT=<dir> builds against another library, no Swift build.
CXX ?= g++
JAX_FFI_OUT ?= bindings/python/hla
JAX_FFI_DEPS ?= lib
jax-ffi: $(JAX_FFI_DEPS)
	@inc=$$($(PYTHON) -c 'import jax.ffi; print(jax.ffi.include_dir())' 2>/dev/null) || \
	    { echo "jax-ffi: JAX is not installed ($(PYTHON)): hla.jax not built"; exit 0; }; \
	set -x; $(CXX) -std=c++17 -O2 -fPIC -shared -Wall -Wextra -Iinclude -isystem "$$inc" \
	    bindings/python/src/jax_ffi.cc -L$(LIBDIR) -lhla -Wl,-z,now -Wl,-rpath,$(LIBDIR) \
	    -o $(JAX_FFI_OUT)/_hla_jax_ffi.so

# The release library and the TSan library (`tsan`) built side by side first: for most of each build's minutes
# the optimizer works on one core. pytest runs last, so its summary line closes the output.
test-builds: $(DEPS_STAMP)
	$(MAKE) -j2 lib tsan-lib

test: test-builds all check-header test-swift test-c test-examples test-ggml test-mpi fuzz-ci tsan test-wheel test-python

# The dense-product and step-kernel tests once more on the AVX2/FMA tiles and step kernel (HLA_SIMD=avx2): the run
# above used the AVX-512 ones where the CPU has them. Test cases run in parallel processes (one per core; most of
# them on one thread).
test-swift: $(DEPS_STAMP)
	$(SWIFT) test -c debug --parallel
	HLA_SIMD=avx2 $(SWIFT) test -c debug --skip-build --parallel --filter 'GemmTests|StepHeadsKernelTests|SerialStepIdentityTests|StepKVCopiesTests|TileWorkTests'
	HLA_SIMD=portable $(SWIFT) test -c debug --skip-build --parallel --filter 'GemmTests|SerialStepIdentityTests|TileWorkTests'

test-c: lib
	$(MAKE) -C Tests/c LIBDIR=$(LIBDIR)

# The examples check their own parity (non-zero exit on disagreement), so they run as tests too.
test-examples: all
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) run
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/parity.py --T 128
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/torch_decode.py

# Two pytest worker processes (pytest-xdist): most tests run on one thread.
test-python: python
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) -m pytest -q -n 2 Tests/python

# Sequence parallelism over MPI (Tests/mpi/test_mpi.py): hla.mpi and examples/mpi under mpirun at 1-4
# ranks on this machine (--oversubscribe), checked against one process; 12-25 s here (2 cores).
test-mpi: python
	$(MAKE) -C examples/mpi LIBDIR=$(LIBDIR) all
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) -m pytest -q Tests/mpi

# HLA inside ggml (examples/ggml): a small decoder as a ggml graph (ggml from ggml-python, .ci/deps.sh)
# whose HLA node calls libhla; prefill + greedy decode for each operator, checked against numpy +
# hla.forward (logits to 1e-4). A few seconds.
test-ggml: python
	$(MAKE) -C examples/ggml LIBDIR=$(LIBDIR) PYTHON=$(PYTHON) run

# Fuzzing (Tests/fuzz/README.md): libFuzzer harnesses linked against an ASan + coverage build of the
# library in .build-fuzz (FUZZ_CONFIG=debug: asserts and overflow checks on; release: the shipped code).
# `make fuzz` fuzzes each harness FUZZ_SECONDS from the saved corpus (new inputs: Tests/fuzz/build/corpus);
# `make fuzz-ci` builds, replays the saved corpus as a regression test and fuzzes briefly (about 90 s).
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 40
FUZZ_CONFIG ?= debug
FUZZ_SH = SWIFT=$(SWIFT) FUZZ_CONFIG=$(FUZZ_CONFIG) bash Tests/fuzz/fuzz.sh
.PHONY: fuzz fuzz-ci

fuzz: $(DEPS_STAMP)
	$(FUZZ_SH) build
	$(FUZZ_SH) run $(FUZZ_SECONDS) 2

fuzz-ci: $(DEPS_STAMP)
	@start=$$(date +%s); $(FUZZ_SH) build && $(FUZZ_SH) replay && FUZZ_SEED=1 $(FUZZ_SH) run $(FUZZ_CI_SECONDS) 2; rc=$$?; \
	echo "fuzz-ci: $$(( $$(date +%s) - start )) s, exit $$rc"; exit $$rc

# ThreadSanitizer: the library built with -sanitize=thread in .build-tsan (release configuration: the
# shipped, specialised code, whose stores TSan sees; in a debug build generic code writes through the
# uninstrumented runtime), Tests/c/test_threads.c built with the toolchain's clang and run with 4 pool
# threads; any race report fails it (halt_on_error). die_after_fork=0: the test's forked children start
# the pool's threads, which TSan supports since it locks its own state around fork.
TOOLCHAIN_BIN := $(dir $(realpath $(shell command -v $(SWIFT))))
TSAN_CC ?= $(TOOLCHAIN_BIN)clang
TSAN_RT := $(TOOLCHAIN_BIN)../lib/swift/linux
TSAN_LIBDIR := $(CURDIR)/.build-tsan/release
TSAN_TEST := $(CURDIR)/.build-tsan/test_threads
TSAN_FORK_CHILDREN ?= 100

tsan-lib: $(DEPS_STAMP)
	$(SWIFT) build -c release --product hla --scratch-path .build-tsan -Xswiftc -sanitize=thread -Xcc -fsanitize=thread

tsan: tsan-lib
	@start=$$(date +%s); \
	$(TSAN_CC) -std=c99 -Wall -Wextra -pedantic -Werror -fsanitize=thread -O1 -g -Iinclude Tests/c/test_threads.c \
	     -o $(TSAN_TEST) -L$(TSAN_LIBDIR) -lhla -Wl,-rpath,$(TSAN_LIBDIR) \
	     -L$(TSAN_RT) -ldispatch -lBlocksRuntime -Wl,-rpath,$(TSAN_RT) -lm -pthread \
	&& TSAN_OPTIONS=halt_on_error=1:die_after_fork=0 HLA_NUM_THREADS=4 $(TSAN_TEST) $(TSAN_FORK_CHILDREN); rc=$$?; \
	echo "tsan: $$(( $$(date +%s) - start )) s, exit $$rc"; exit $$rc

# The wheel users install (README "Installing the wheel"): libhla.so (release, Swift runtime static,
# AVX2/FMA) inside the `hla` package with an $ORIGIN rpath, repaired by auditwheel into dist/ (manylinux
# tag; the libraries it needs outside the manylinux set, e.g. OpenBLAS, bundled in hla.libs/).
# `make test-wheel` installs it into a fresh virtualenv and checks it with the source tree hidden.
wheel: lib
	PYTHON=$(PYTHON) bash bindings/python/wheel.sh dist

test-wheel: lib
	@start=$$(date +%s); PYTHON=$(PYTHON) bash bindings/python/wheel.sh dist && PYTHON=$(PYTHON) bash Tests/wheel/test_wheel.sh dist; rc=$$?; \
	echo "test-wheel: $$(( $$(date +%s) - start )) s, exit $$rc"; exit $$rc

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libhla.so
	# DWARF debug info off the installed copy (exported symbols stay): smaller, and valgrind 3.19
	# cannot read the DWARF 5 the toolchain emits.
	strip --strip-debug $(DESTDIR)$(PREFIX)/lib/libhla.so
	install -m 644 include/hla.h $(DESTDIR)$(PREFIX)/include/hla.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(HLA_VERSION)|g' include/hla.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hla.pc

demo: all
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) run
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/parity.py
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/torch_decode.py

clean:
	rm -rf .build .build-tsan .build-wheel-py build dist bindings/python/build bindings/python/hla/*.so
	$(MAKE) -C Tests/c clean
	$(MAKE) -C examples/c clean
	$(MAKE) -C examples/mpi clean
	$(MAKE) -C examples/ggml clean

# MQAR training demo (examples/train, docs/experiments.md): checks the HLA operator the training uses
# (hla.torch, else a torch stand-in) against libhla, trains tiny models with each mixer (softmax, linear,
# hla2, ahla, hla3) on CPU and prints the accuracy table; a few minutes. Non-zero exit on NaN/errors only.
train-demo: python
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/train/check_standin.py
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/train/train.py --preset demo

bench: all
	$(PYTHON) -m pip install -q matplotlib threadpoolctl ml_dtypes
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/bench/bench.py --out docs $(if $(BASELINE),--baseline $(BASELINE))
