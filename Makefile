# sluice — build, test, demo.
#
#   make            build/sluiced, build/sluicectl, build/sluice-sim
#   make check      install what is missing, build, run every test (plain, then under
#                   ASan+UBSan, integration under the sanitizers, valgrind)
#   make demo       install what is missing, build, run a simulated site on loopback
#   make bench      the benchmark (docs/performance.md)
#   make fuzz       libFuzzer on every parser, FUZZ_SECONDS each
#   make valgrind   every test under valgrind memcheck
#   make soak       a site under faults for SOAK_SECONDS (default 600; docs/testing.md)
#   make install    PREFIX=/usr/local DESTDIR= (the layout: tools/install.sh)
#   make deb        a Debian package in build/deb/ (ARCH=arm64|armhf: cross-built)

PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
B ?= build

PKGS := libmodbus libmosquitto sqlite3 yaml-0.1 libmicrohttpd libcrypt
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -std=c11 -Wall -Wextra -Werror -Wno-missing-field-initializers
CPPFLAGS += -D_GNU_SOURCE -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 \
	-DSLUICE_DATADIR='"$(PREFIX)/share/sluice"' -DSLUICE_VERSION='"$(VERSION)"'
LDLIBS := $(PKG_LIBS) -lpthread -lm
VERSION := 0.1.0

ifeq ($(SAN),1)
CC := clang
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif
# the objects the fuzz targets link (tests/fuzz/run): coverage for libFuzzer, no main
ifeq ($(SAN),fuzz)
CC := clang
CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=all
endif

# The layering, enforced by what each folder may include (docs/design.md, "Folders"):
# lib/ sees only itself, drivers/ sees lib/, daemon/ sees drivers/ and lib/, tools/ sees
# all three. A header included across the line does not compile.
INC_lib := -Ilib
INC_drivers := -Ilib -Idrivers
INC_daemon := -Ilib -Idrivers -Idaemon
INC_tools := -Ilib -Idrivers -Idaemon -Itools
INC_tests := $(INC_tools) -Itests/unit -Itests/fuzz
INC_bench := $(INC_tools)
inc = $(INC_$(firstword $(subst /, ,$(1))))

# Programs are their main file and libsluice.a: every module of lib/, drivers/, daemon/
# and tools/ but the three mains. Tests, fuzz targets and the bench link the same archive
# and the linker takes from it what each needs.
MAINS := daemon/main.c tools/sluicectl.c tools/sluice-sim.c
LIB_SRCS := $(filter-out $(MAINS),$(wildcard lib/*.c drivers/*.c daemon/*.c tools/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/obj/%.o) $(B)/obj/gen/web_assets.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_TESTS := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)
PROGS := $(B)/sluiced $(B)/sluicectl $(B)/sluice-sim

all: $(PROGS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(call inc,$<) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

# The web page's files (daemon/web/) go into the binary as a generated C file.
WEB_FILES := $(sort $(wildcard daemon/web/*))
$(B)/gen/web_assets.c: $(WEB_FILES) tools/embed
	@mkdir -p $(@D)
	tools/embed $@ $(WEB_FILES)

$(B)/obj/gen/web_assets.o: $(B)/gen/web_assets.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(INC_daemon) $(CFLAGS) $(WARN) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(B)/libsluice.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(B)/sluiced: $(B)/obj/daemon/main.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/sluicectl: $(B)/obj/tools/sluicectl.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/sluice-sim: $(B)/obj/tools/sluice-sim.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

lib: $(B)/libsluice.a

# config.o and sim_args.o (sluice-sim's --help) bake $(PREFIX)/share/sluice in: rebuild
# them when PREFIX changes, so `make install PREFIX=/usr` after a plain `make` does not
# install binaries that look for the profiles under /usr/local
PREFIX_STAMP := $(B)/prefix$(subst /,_,$(PREFIX)).stamp
$(PREFIX_STAMP):
	@mkdir -p $(@D)
	@rm -f $(B)/prefix*.stamp
	@touch $@
$(B)/obj/daemon/config.o $(B)/obj/tools/sim_args.o: $(PREFIX_STAMP)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(B)/libsluice.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

unit-bins: $(UNIT_TESTS)

unit: $(UNIT_TESTS)
	@tests/run-unit $(UNIT_TESTS)

# --- the README's commands -------------------------------------------------------

deps:
	@tools/install-deps

check: deps
	@tests/check

demo: deps
	@$(MAKE) -s --no-print-directory all
	@tools/demo

# what the gateway costs, on stated workloads (bench/bench.py --help):
#   make bench BENCH="reference drain --seconds 60"
#   make bench BENCH=compare       medium and reference beside collectd (docs/performance.md)
bench:
	@python3 bench/bench.py $(BENCH)

# ARM builds under build/cross-$(ARCH), tested under qemu-user (tools/cross)
ARCH_SET := $(ARCH)
ARCH ?= arm64
cross:
	@tools/cross $(ARCH) build
check-cross:
	@tools/cross $(ARCH) check

# libFuzzer on every parser of outside input, FUZZ_SECONDS each (make check replays
# the corpora and crash reproducers under the sanitizers)
FUZZ_SECONDS ?= 60
fuzz:
	@tests/fuzz/run --fuzz $(FUZZ_SECONDS)

# every test under valgrind memcheck (make check runs it on the unit tests and one
# end-to-end test)
valgrind: all unit-bins
	@tests/run-unit --valgrind $(UNIT_TESTS)
	@for t in tests/integration/test_*.py; do SLUICE_VALGRIND=1 python3 $$t || exit 1; done

# a site under faults for SOAK_SECONDS, then every seq accounted for, RSS and descriptors
# flat (docs/testing.md); then POWERLOSS_ITERATIONS power cuts per durability
# (tests/integration/test_powerloss.py); the plain build unless SLUICE_BIN says
# (B=build/asan SAN=1 works)
SOAK_SECONDS ?= 600
POWERLOSS_ITERATIONS ?= 30
soak: all
	@SOAK_SECONDS=$(SOAK_SECONDS) SLUICE_BIN=$${SLUICE_BIN:-$(B)} python3 tests/soak/soak.py
	@POWERLOSS_ITERATIONS=$(POWERLOSS_ITERATIONS) SLUICE_BIN=$${SLUICE_BIN:-$(B)} \
		python3 tests/integration/test_powerloss.py

install: all
	@DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' B='$(B)' SYSCONFDIR='$(SYSCONFDIR)' \
		UNITDIR='$(UNITDIR)' tools/install.sh

# dpkg-buildpackage writes the package to the parent directory: collect it in build/deb/
deb:
	@if [ -n "$(ARCH_SET)" ] && [ "$(ARCH)" != "$$(dpkg --print-architecture)" ]; then \
		tools/cross $(ARCH) deb; exit $$?; fi; \
	tools/install-deps --deb && dpkg-buildpackage -us -uc -b && mkdir -p build/deb && \
	v=$$(dpkg-parsechangelog -S Version); \
	for f in ../sluice_$${v}_* ../sluice-dbgsym_$${v}_*; do \
		if [ -e "$$f" ]; then mv -f "$$f" build/deb/; fi; \
	done; ls -l build/deb

clean:
	rm -rf build

.PHONY: all lib bench unit unit-bins deps check check-cross cross demo fuzz valgrind soak install deb clean
.DELETE_ON_ERROR:

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
