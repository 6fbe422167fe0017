# vmsync top-level build.  `make` builds, `make check` tests (plain and under
# ASan+UBSan), `make demo` runs the main job, `make bench` measures, `make fuzz`
# builds the libFuzzer targets.

BUILD ?= build
SAN ?=
CC ?= cc
PKGS := ext2fs com_err libntfs-3g libnbd blkid openssl libzstd sqlite3 libssh libarchive libcurl

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

.PHONY: all deps check check-plain check-san demo bench fuzz fuzz-run clean \
        programs man install uninstall deb
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

# The manifest benchmark, then checkout and check-in against casync and rsync,
# the same over narrow links, a simulated rollout and a real one against its
# prediction, checkouts through nginx,
# a branch's upstream line with and without a reflector, then
# bench/summary.py: one table of every figure
# of this run.  One run id ties the steps' JSON files together; a step that
# fails is noted in bench-status.tsv, the others still run, its rows show as
# "not measured" and make bench fails at the end.
bench: export BENCH_RUN_ID := $(shell date -u +%Y%m%dT%H%M%SZ)-$(shell echo $$$$)
bench_step = $(1) $(BUILD) || printf '%s\t%s\n' $(1) $$? >>$(BUILD)/bench-status.tsv
bench: deps all
	rm -f $(BUILD)/bench-status.tsv
	$(call bench_step,bench/run.sh)
	$(call bench_step,bench/sync.sh)
	$(call bench_step,bench/share.sh)
	$(call bench_step,bench/wan.sh)
	$(call bench_step,bench/fleet.sh)
	$(call bench_step,bench/fleet_run.sh)
	$(call bench_step,bench/web.sh)
	$(call bench_step,bench/reflector.sh)
	bench/summary.py $(BUILD)

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

# ---- man pages, install, packages -------------------------------------------------
# Each docs/man/NAME.SECTION.scd becomes $(BUILD)/man/NAME.SECTION, installed
# under share/man/manSECTION/.
MAN_SRC := $(wildcard docs/man/*.scd)
MAN_OUT := $(MAN_SRC:docs/man/%.scd=$(BUILD)/man/%)
man: $(MAN_OUT)
$(BUILD)/man/%: docs/man/%.scd
	@mkdir -p $(dir $@)
	scdoc <$< >$@

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/lib/vmsync
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSTEMDUSERUNITDIR ?= $(PREFIX)/lib/systemd/user
# The agent goes to bin/, not sbin/: sshd starts it through authorized_keys'
# command= with the default PATH of a user, which has no sbin.
INSTALL_PROGRAMS := vmsync vmsync-agent vmsync-gtk
UNITS := vmsync-maintenance.service vmsync-maintenance.timer
USER_UNITS := vmsync-prefetch@.service vmsync-prefetch@.timer
ICONS := $(patsubst gui-gtk/data/%,%,$(shell find gui-gtk/data/icons -type f | sort))
# The completion script comes with the man pages: installed once it is there.
# It completes the agent too; bash-completion finds it by the command's name.
COMPLETION := $(wildcard packaging/completion/vmsync)
APPDATA := applications/org.vmsync.Gtk.desktop metainfo/org.vmsync.Gtk.metainfo.xml \
           $(if $(COMPLETION),bash-completion/completions/vmsync bash-completion/completions/vmsync-agent)
# Every file install writes, so that uninstall removes exactly those.
INSTALLED := $(INSTALL_PROGRAMS:%=$(BINDIR)/%) $(LIBEXECDIR)/vmsync-maintenance \
             $(APPDATA:%=$(DATADIR)/%) $(ICONS:%=$(DATADIR)/%) \
             $(UNITS:%=$(SYSTEMDUNITDIR)/%) $(USER_UNITS:%=$(SYSTEMDUSERUNITDIR)/%) \
             $(foreach m,$(notdir $(MAN_OUT)),$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(m))
# The units name the installed paths.
SUBST_PATHS = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g'

programs: $(INSTALL_PROGRAMS:%=$(BUILD)/%)
install: programs man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
	  $(DESTDIR)$(SYSTEMDUSERUNITDIR) \
	  $(DESTDIR)$(DATADIR)/applications $(DESTDIR)$(DATADIR)/metainfo \
	  $(DESTDIR)$(DATADIR)/bash-completion/completions
	install -m 755 $(INSTALL_PROGRAMS:%=$(BUILD)/%) $(DESTDIR)$(BINDIR)/
	$(SUBST_PATHS) packaging/systemd/vmsync-maintenance >$(DESTDIR)$(LIBEXECDIR)/vmsync-maintenance
	chmod 755 $(DESTDIR)$(LIBEXECDIR)/vmsync-maintenance
	for u in $(UNITS); do \
	  $(SUBST_PATHS) packaging/systemd/$$u >$(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	  chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	for u in $(USER_UNITS); do \
	  $(SUBST_PATHS) packaging/systemd/$$u >$(DESTDIR)$(SYSTEMDUSERUNITDIR)/$$u; \
	  chmod 644 $(DESTDIR)$(SYSTEMDUSERUNITDIR)/$$u; done
	install -m 644 gui-gtk/data/org.vmsync.Gtk.desktop $(DESTDIR)$(DATADIR)/applications/
	install -m 644 packaging/org.vmsync.Gtk.metainfo.xml $(DESTDIR)$(DATADIR)/metainfo/
	$(if $(COMPLETION),install -m 644 $(COMPLETION) $(DESTDIR)$(DATADIR)/bash-completion/completions/vmsync)
	$(if $(COMPLETION),ln -sf vmsync $(DESTDIR)$(DATADIR)/bash-completion/completions/vmsync-agent)
	for i in $(ICONS); do install -D -m 644 gui-gtk/data/$$i $(DESTDIR)$(DATADIR)/$$i; done
	for m in $(MAN_OUT); do \
	  s=$${m##*.}; install -D -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/$${m##*/}; done

uninstall:
	rm -f $(INSTALLED:%=$(DESTDIR)%)
	-rmdir $(DESTDIR)$(LIBEXECDIR) 2>/dev/null

# The packages, built from the tracked files of the work tree (committed or
# not, untracked files left out) copied into $(BUILD)/deb/src, as
# dpkg-buildpackage -us -uc -b builds them; lintian then judges them.
DEB_DIR := $(BUILD)/deb
deb:
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	git ls-files -z --cached | xargs -0 cp -a --parents -t $(DEB_DIR)/src
	cd $(DEB_DIR)/src && dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning --info $(DEB_DIR)/*.changes

clean:
	rm -rf build build-san build-fuzz
