# libhla — see README.md. `make` builds the library and the Python extension; `make test` runs every suite.
PREFIX ?= /usr/local
SWIFT ?= swift
PYTHON ?= python3
SWIFT_FLAGS = -c release -Xswiftc -static-stdlib
LIBDIR := $(CURDIR)/.build/release
LIB := $(LIBDIR)/libhla.so
export LIBHLA_LIBDIR := $(LIBDIR)

.PHONY: all lib python header check-header test test-swift test-c test-python install demo bench clean deps

all: lib python

deps:
	bash .ci/deps.sh

lib:
	$(SWIFT) build $(SWIFT_FLAGS) --product hla

header: lib
	$(PYTHON) tools/genheader.py --write

check-header: lib
	$(PYTHON) tools/genheader.py --check

python: lib
	cd bindings/python && $(PYTHON) setup.py -q build_ext --inplace

test: all check-header test-swift test-c test-python

test-swift:
	$(SWIFT) test -c debug

test-c: lib
	$(MAKE) -C Tests/c LIBDIR=$(LIBDIR)

test-python: python
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) -m pytest -q Tests/python

install: lib
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libhla.so
	install -m 644 include/hla.h $(DESTDIR)$(PREFIX)/include/hla.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' tools/hla.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/hla.pc

demo: all
	$(MAKE) -C examples/c LIBDIR=$(LIBDIR) run
	PYTHONPATH=$(CURDIR)/bindings/python $(PYTHON) examples/python/parity.py

clean:
	rm -rf .build build bindings/python/build bindings/python/hla/*.so
	$(MAKE) -C Tests/c clean
	$(MAKE) -C examples/c clean
