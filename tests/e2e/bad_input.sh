#!/usr/bin/env bash
# Bad inputs get the documented exit status and one "vmsync: PATH: ..." line.
#   truncated disk -> 4, text file -> 4 "not a disk image", empty file -> 4,
#   missing / unreadable path / directory -> 3, qcow2 with a missing backing
#   file -> 4 "backing", garbage given as a manifest -> 4 or 5.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync

# expect_err LABEL STATUSES PATH WORD ARGS...: STATUSES is a list like "4" or "4 5"
expect_err() {
    local label=$1 want=$2 path=$3 word=$4 p
    shift 4
    p="$T/$label"
    vm "$p" "$@"
    if [[ " $want " != *" $VM_RC "* ]]; then
        bad "$label: vmsync $* exited $VM_RC, expected $want; stderr: $(head -c 300 "$p.err" | tr '\n' '|')"
        return
    fi
    local why
    why=$(one_error_line "$p" "$path" "$word") || bad "$label: $why"
    if [[ -e $T/$label.vmm ]]; then
        bad "$label: a manifest file was written although the command failed"
    fi
}

# a GPT disk cut in half
gpt=$(img ext4-gpt) || fail "cannot build ext4-gpt"
half=$(($(stat -c %s "$gpt") / 2))
dd if="$gpt" of="$T/truncated.img" bs=1M iflag=count_bytes count="$half" conv=sparse status=none
expect_err truncated 4 "$T/truncated.img" "" manifest "$T/truncated.img" -o "$T/truncated.vmm"
expect_err truncated-json 4 "$T/truncated.img" "" manifest "$T/truncated.img" --json
expect_err truncated-inspect 4 "$T/truncated.img" "" inspect "$T/truncated.img"

# a text file
python3 -c "
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(200):
        f.write('line %d: this is a text file, not a disk image\n' % i)
" "$T/notes.txt"
expect_err text 4 "$T/notes.txt" "not a disk image" manifest "$T/notes.txt" -o "$T/text.vmm"
expect_err text-inspect 4 "$T/notes.txt" "not a disk image" inspect "$T/notes.txt"

# an empty file
: >"$T/empty.img"
expect_err empty 4 "$T/empty.img" "" manifest "$T/empty.img" -o "$T/empty.vmm"

# missing path
expect_err missing 3 "$T/does-not-exist.img" "" manifest "$T/does-not-exist.img" -o "$T/missing.vmm"
expect_err missing-diff 3 "$T/does-not-exist.img" "" diff "$gpt" "$T/does-not-exist.img"
expect_err missing-show 3 "$T/does-not-exist.vmm" "" manifest show "$T/does-not-exist.vmm"
expect_err missing-inspect 3 "$T/does-not-exist.img" "" inspect "$T/does-not-exist.img"

# a directory
mkdir -p "$T/a-directory"
expect_err directory 3 "$T/a-directory" "" manifest "$T/a-directory" -o "$T/directory.vmm"

# an unreadable file (root reads anything: drop to nobody for this one)
ur=$(mktemp -d "$VMSYNC_TEST_WORK/unreadable.XXXXXX")
chmod o+x "$VMSYNC_TEST_WORK" # nobody may walk to the file, just not read it
chmod 755 "$ur"
cp "$T/notes.txt" "$ur/secret.img"
chmod 000 "$ur/secret.img"
if [[ $(id -u) != 0 ]]; then
    expect_err unreadable 3 "$ur/secret.img" "" manifest "$ur/secret.img" --json
elif command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$VMSYNC" 2>/dev/null; then
    VM_RC=0
    timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$VMSYNC" manifest "$ur/secret.img" --json >"$T/unreadable.out" 2>"$T/unreadable.err" || VM_RC=$?
    if ((VM_RC != 3)); then
        bad "unreadable: vmsync manifest on a mode-000 file (as nobody) exited $VM_RC, expected 3: $(head -c 200 "$T/unreadable.err")"
    else
        why=$(one_error_line "$T/unreadable" "$ur/secret.img") || bad "unreadable: $why"
    fi
else
    info "unreadable: skipped (cannot run the binary as nobody)"
fi
rm -rf "$ur"

# qcow2 whose backing file is missing
if command -v qemu-img >/dev/null; then
    truncate -s 64M "$T/base.raw"
    qemu-img create -q -f qcow2 -b "$T/base.raw" -F raw "$T/overlay.qcow2" >/dev/null
    rm -f "$T/base.raw"
    expect_err backing 4 "$T/overlay.qcow2" "backing" manifest "$T/overlay.qcow2" -o "$T/backing.vmm"
else
    info "backing: skipped (no qemu-img)"
fi

# garbage given as a saved manifest
head -c 65536 "$gpt" >"$T/garbage.vmm"
expect_err show-garbage "4 5" "$T/garbage.vmm" "" manifest show "$T/garbage.vmm" --json
expect_err show-text "4 5" "$T/notes.txt" "" manifest show "$T/notes.txt"

# --help on each command
for cmd in "" manifest "manifest show" diff inspect; do
    # shellcheck disable=SC2086
    vm "$T/help" $cmd --help
    if ((VM_RC != 0)) || [[ ! -s $T/help.out ]]; then
        bad "vmsync $cmd --help: status $VM_RC, $(wc -c <"$T/help.out") bytes on stdout"
    fi
done
finish
