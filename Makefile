# vmsync top-level build.  `make` builds, `make check` tests (plain and under
# ASan+UBSan), `make demo` runs the main job, `make bench` measures, `make fuzz`
# builds the libFuzzer targets.

BUILD ?= build
SAN ?=
CC ?= cc
PKGS := ext2fs com_err libntfs-3g libnbd blkid openssl libzstd sqlite3 libssh libarchive

WARN := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter
OPT := -O2 -g
SANFLAGS :=
ifeq ($(SAN),1)
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined
OPT := -O1 -g -fno-omit-frame-pointer $(SANFLAGS)
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Clients (the CLI, the agent, the window) see only the public headers: their
# include path is PUBLIC_INC alone, so a reach into a private header fails to
# build.  The libraries and the white-box tests add their own folders.
PUBLIC_INC := -Ifsparse/include -Ivmsync/include
PRIVATE_INC := -Ifsparse -Ivmsync/lib
CPPFLAGS += -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(PUBLIC_INC)
CFLAGS += -std=gnu11 $(OPT) $(WARN) $(PKG_CFLAGS) -pthread
LDFLAGS += $(SANFLAGS) -pthread
LDLIBS += $(PKG_LIBS) -lm

FSPARSE_SRC := $(wildcard fsparse/*.c)
LIBVMSYNC_SRC := $(shell find vmsync/lib -name '*.c' | sort)
CLI_SRC := $(wildcard vmsync/cli/*.c)
AGENT_SRC := $(wildcard agent/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
TOOL_SRC := $(wildcard tests/tools/*.c)
GUI_SRC := $(wildcard gui-gtk/*.c)

FSPARSE_OBJ := $(FSPARSE_SRC:%.c=$(BUILD)/obj/%.o)
LIBVMSYNC_OBJ := $(LIBVMSYNC_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
AGENT_OBJ := $(AGENT_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tools/%)
GUI_OBJ := $(GUI_SRC:%.c=$(BUILD)/obj/%.o)
# The window's toolkit: its headers come in as system headers, so that our
# warnings judge our code only.
GUI_PKGS := gtk4 libadwaita-1
GUI_CFLAGS = $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(GUI_PKGS) 2>/dev/null))
GUI_LIBS = $(shell pkg-config --libs $(GUI_PKGS) 2>/dev/null)

.PHONY: all deps check check-plain check-san demo bench fuzz fuzz-run clean
all: $(BUILD)/vmsync $(BUILD)/vmsync-agent $(BUILD)/vmsync-gtk $(UNIT_BIN) $(TOOL_BIN)

deps:
	@packaging/install-deps.sh

HEADERS := $(shell find fsparse vmsync agent -name '*.h')
$(FSPARSE_OBJ) $(LIBVMSYNC_OBJ): CPPFLAGS += $(PRIVATE_INC)
# The versions whose headers do not say them, for --version (base/versions.c).
$(BUILD)/obj/vmsync/lib/base/versions.o: CPPFLAGS += \
  $(foreach lib,EXT2FS:ext2fs NTFS3G:libntfs-3g LIBNBD:libnbd,-DVMS_BUILT_$(word 1,$(subst :, ,$(lib)))='"$(shell pkg-config --modversion $(word 2,$(subst :, ,$(lib))))"')

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libfsparse.a: $(FSPARSE_OBJ)
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libvmsync.a: $(LIBVMSYNC_OBJ)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/vmsync: $(CLI_OBJ) $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/vmsync-agent: $(AGENT_OBJ) $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The window is a client too: PUBLIC_INC and the toolkit, nothing private.
$(GUI_OBJ): CFLAGS += $(GUI_CFLAGS)
$(GUI_OBJ): $(wildcard gui-gtk/*.h)
$(BUILD)/vmsync-gtk: $(GUI_OBJ) $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	$(CC) $(LDFLAGS) -o $@ $^ $(GUI_LIBS) $(LDLIBS)

# The window's view models are tested without a display: their display-free
# object links into unit tests alone.
GUI_MODEL_OBJ := $(BUILD)/obj/gui-gtk/model.o
$(BUILD)/tests/test_gui_%: tests/unit/test_gui_%.c $(GUI_MODEL_OBJ) $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PRIVATE_INC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Test tools are clients: public headers only, like the CLI.
$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Helpers the end-to-end tests run (not tests themselves: run.sh does not start them).
$(BUILD)/tools/%: tests/tools/%.c $(BUILD)/libvmsync.a $(BUILD)/libfsparse.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Objects live under $(BUILD)/obj/ (e.g. build/obj/fsparse/ext.o); binaries in $(BUILD)/.
# The suite runs twice: optimised, then under ASan and UBSan.
check: deps
	$(MAKE) check-plain
	$(MAKE) check-san

check-plain: all
	tests/run.sh $(BUILD)

check-san:
	$(MAKE) BUILD=build-san SAN=1 all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  tests/run.sh build-san

demo: deps all
	tests/demo.sh $(BUILD)

# The manifest benchmark, then checkout and check-in against casync and rsync.
bench: deps all
	bench/run.sh $(BUILD)
	bench/sync.sh $(BUILD)
	bench/wan.sh $(BUILD)

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz: deps $(FUZZ_TARGETS)
build-fuzz/%: tests/fuzz/%.c $(FSPARSE_SRC) $(LIBVMSYNC_SRC)
	@mkdir -p build-fuzz
	clang $(CPPFLAGS) $(PRIVATE_INC) -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) \
	  -o $@ $^ $(PKG_LIBS) -lm -pthread

# Bounded fuzzing runs for CI: FUZZ_SECONDS per target, the corpus as seeds.
FUZZ_SECONDS ?= 60
fuzz-run: fuzz
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-san build-fuzz
