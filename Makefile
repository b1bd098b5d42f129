# libhla — see README.md. `make` builds the library and the Python extension; `make test` runs every suite.
PREFIX ?= /usr/local
SWIFT ?= swift
PYTHON ?= python3
# Release build: Swift runtime linked statically; AVX2/FMA code (HLA_TARGET_CPU= for a generic x86-64 build).
HLA_TARGET_CPU ?= haswell
SWIFT_FLAGS = -c release -Xswiftc -static-stdlib $(if $(HLA_TARGET_CPU),-Xswiftc -target-cpu -Xswiftc $(HLA_TARGET_CPU))
LIBDIR := $(CURDIR)/.build/release
LIB := $(LIBDIR)/libhla.so
export LIBHLA_LIBDIR := $(LIBDIR)
# The version, from the single source of truth (HLA_VERSION_* in Sources/CHLA/include/hla_types.h).
HLA_VERSION := $(shell awk '/define HLA_VERSION_(MAJOR|MINOR|PATCH)/ {v = v (v ? "." : "") $$3} END {print v}' Sources/CHLA/include/hla_types.h)

.PHONY: all lib python header check-header test test-swift test-c test-examples test-python install demo bench clean deps

all: lib python

# System and Python packages (apt-get, pip), installed once per machine.
DEPS_STAMP := build/.deps-installed
deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/deps.sh
	bash .ci/deps.sh
	mkdir -p build && touch $@

lib: $(DEPS_STAMP)
	$(SWIFT) build $(SWIFT_FLAGS) --product hla

header: lib
	$(PYTHON) .ci/genheader.py --write

check-header: lib
	$(PYTHON) .ci/genheader.py --check

python: lib
	cd bindings/python && $(PYTHON) setup.py -q build_ext --inplace

# pytest runs last, so its summary line closes the output.
test: all check-header test-swift test-c test-examples test-python

test-swift: $(DEPS_STAMP)
	$(SWIFT) test -c debug

test-c: lib
	$(MAKE) -C Tests/c LIBDIR=$(LIBDIR)

# The examples check their own parity (non-zero exit on disagreement), so they run as tests too.
test-examples: all
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) run
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/parity.py --T 128
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/torch_decode.py

test-python: python
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) -m pytest -q Tests/python

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
	rm -rf .build build bindings/python/build bindings/python/hla/*.so
	$(MAKE) -C Tests/c clean
	$(MAKE) -C examples/c clean

bench: all
	$(PYTHON) -m pip install -q matplotlib threadpoolctl ml_dtypes
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/bench/bench.py --out docs $(if $(BASELINE),--baseline $(BASELINE))
