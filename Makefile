# mim -- SimMIM masked image modeling as a Unix toolkit.
#   make            build libmim and every tool into $(BUILD)
#   make test       install missing Debian packages, build, run the test suite
#   make asan       the whole test suite under AddressSanitizer + UBSan
#   make demo       pretrain on real photos and render reconstructions
#   make fuzz       libFuzzer targets (clang) into $(BUILD)/fuzz
#   make bundle     a relocatable tarball of the tools and their libraries
#   make install    PREFIX=/usr/local DESTDIR=
include config.mk

BUILD ?= build
ifeq ($(SANITIZE),1)
BUILD    := build/asan
OPT      := -O1 -fno-omit-frame-pointer -march=native
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lvips -ljpeg -larchive -ljansson -lopenblas -lglib-2.0 -lgobject-2.0)
ALL_CFLAGS  = $(CFLAGS) $(SANFLAGS) -Iinclude -Icmd $(PKG_CFLAGS) -MMD -MP -D_GNU_SOURCE
LDLIBS      = $(PKG_LIBS) $(DNNL_LIBS) -lm -lpthread

LIBSRC  := $(sort $(wildcard lib/*.c lib/*/*.c))
CMDSRC  := $(sort $(wildcard cmd/mim-*.c))
CLISRC  := cmd/cli.c
TESTSRC := $(sort $(wildcard tests/unit/test_*.c))
FUZZSRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIBOBJ  := $(LIBSRC:%.c=$(BUILD)/obj/%.o)
CLIOBJ  := $(CLISRC:%.c=$(BUILD)/obj/%.o)
LIBA    := $(BUILD)/lib/libmim.a
BINS    := $(CMDSRC:cmd/%.c=$(BUILD)/bin/%)
TESTS   := $(TESTSRC:tests/unit/%.c=$(BUILD)/tests/%)
MANS    := $(wildcard man/*.[1-9])

.PHONY: all tools test check asan demo fuzz bench bundle install clean deps
all: $(BINS) $(TESTS)
tools: $(BINS) $(LIBA)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBA): $(LIBOBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $(LIBOBJ)

# a tool is cmd/mim-X.c plus, if present, the sources in cmd/X/ (subcommands)
$(BUILD)/bin/%: $(BUILD)/obj/cmd/%.o $(CLIOBJ) $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LDLIBS)
.SECONDEXPANSION:
$(BINS): $$(patsubst %.c,$(BUILD)/obj/%.o,$$(wildcard cmd/$$(patsubst mim-%,%,$$(notdir $$@))/*.c))

# mim-step runs data-parallel under mpirun: only it (cmd/step/) uses Open MPI
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || echo -lmpi)
$(BUILD)/obj/cmd/step/%.o: ALL_CFLAGS += $(MPI_CFLAGS)
$(BUILD)/bin/mim-step: LDLIBS += $(MPI_LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

deps:
	@scripts/deps.sh build test

test check: deps
	@$(MAKE) --no-print-directory all
	@MIM_BUILD=$(BUILD) tests/run.sh

asan:
	@scripts/deps.sh build test
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@MIM_BUILD=build/asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 MIM_SANITIZE=1 tests/run.sh

demo:
	@scripts/deps.sh build demo
	@$(MAKE) --no-print-directory all
	@PATH="$(CURDIR)/$(BUILD)/bin:$$PATH" examples/demo.sh

bench:
	@$(MAKE) --no-print-directory all
	@PATH="$(CURDIR)/$(BUILD)/bin:$$PATH" MIM_BUILD=$(BUILD) bench/run.sh

FUZZ_CFLAGS = -g -O1 -std=c11 -Iinclude $(PKG_CFLAGS) -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined
fuzz: $(FUZZSRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIBSRC)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIBSRC) $(LDLIBS)

# The bundle runs on other machines: built apart (build/bundle), for any
# x86-64 with AVX2 and FMA (Haswell, Zen and later) rather than for this
# CPU; OpenBLAS and oneDNN still choose their kernels when they start.
BUNDLE_OPT ?= -O2 -march=x86-64-v3
BUNDLE_OUT ?= $(BUILD)/mim-bundle.tar.gz
bundle:
	$(MAKE) BUILD=build/bundle OPT='$(BUNDLE_OPT)' tools
	@BENCH_OPT='$(BUNDLE_OPT)' scripts/bundle.sh build/bundle $(BUNDLE_OUT)

install: $(BINS) $(LIBA)
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/mim
	mkdir -p $(DESTDIR)$(MANPREFIX)/man1 $(DESTDIR)$(MANPREFIX)/man5 $(DESTDIR)$(MANPREFIX)/man7
	cp -f $(BINS) $(DESTDIR)$(PREFIX)/bin/
	cp -f $(LIBA) $(DESTDIR)$(PREFIX)/lib/
	cp -f include/mim.h $(DESTDIR)$(PREFIX)/include/
	cp -f include/mim/*.h $(DESTDIR)$(PREFIX)/include/mim/
	for m in $(MANS); do s=$${m##*.}; cp -f $$m $(DESTDIR)$(MANPREFIX)/man$$s/; done

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
