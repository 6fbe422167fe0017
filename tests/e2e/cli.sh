#!/usr/bin/env bash
# Command-line contract: --help everywhere (exit 0, usage on stdout), usage
# errors exit 2 with a "vmsync: " message, inspect works on a good image.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync

# --help: status 0, usage on stdout, nothing on stderr
for cmd in "" manifest "manifest show" diff inspect; do
    # shellcheck disable=SC2086
    vm "$T/help" $cmd --help
    label="vmsync${cmd:+ $cmd} --help"
    if ((VM_RC != 0)); then
        bad "$label exited $VM_RC"
    elif [[ ! -s $T/help.out ]]; then
        bad "$label printed nothing on stdout"
    elif [[ -s $T/help.err ]]; then
        bad "$label wrote to stderr: $(head -c 100 "$T/help.err")"
    fi
    if [[ -z $cmd ]]; then
        for word in manifest diff inspect; do
            grep -q "$word" "$T/help.out" || bad "vmsync --help does not mention '$word'"
        done
    fi
done

# usage errors: status 2 and a "vmsync: ..." line on stderr (usage text may
# follow; with --json a JSON error object instead); nothing on stdout
usage_err() {
    local label=$1
    shift
    vm "$T/usage" "$@"
    if ((VM_RC != 2)); then
        bad "$label: vmsync $* exited $VM_RC, expected 2"
    elif ! grep -q -e '^vmsync: ' -e '^{"error":{' "$T/usage.err"; then
        bad "$label: vmsync $*: no 'vmsync: ...' error line on stderr: $(head -2 "$T/usage.err" | tr '\n' '|')"
    elif [[ -s $T/usage.out ]]; then
        bad "$label: vmsync $*: wrote to stdout on a usage error"
    fi
}
image=$(img diffa-ext4) || fail "cannot build diffa-ext4"
usage_err "no command"
usage_err "unknown command" frobnicate "$image"
usage_err "unknown option" manifest --no-such-option "$image"
usage_err "unknown global option" --no-such-option
usage_err "manifest without image" manifest
usage_err "manifest -o without value" manifest "$image" -o
usage_err "manifest two images" manifest "$image" "$image" --json
usage_err "manifest show without file" manifest show
usage_err "diff with one input" diff "$image"
usage_err "inspect without image" inspect

# inspect works
vm "$T/inspect" inspect "$image"
((VM_RC == 0)) || bad "inspect exited $VM_RC: $(head -c 200 "$T/inspect.err")"
[[ -s $T/inspect.out ]] || bad "inspect printed nothing"
vm "$T/inspectj" inspect "$image" --json
if ((VM_RC != 0)); then
    bad "inspect --json exited $VM_RC: $(head -c 200 "$T/inspectj.err")"
elif ! json_ok "$T/inspectj.out"; then
    bad "inspect --json: stdout is not JSON: $(head -c 200 "$T/inspectj.out")"
fi

# manifest -o writes the file and nothing on stderr
vm "$T/save" manifest "$image" -o "$T/m.vmm"
((VM_RC == 0)) || bad "manifest -o exited $VM_RC: $(head -c 200 "$T/save.err")"
[[ -s $T/m.vmm ]] || bad "manifest -o wrote no file"
[[ ! -s $T/save.err ]] || bad "manifest -o wrote to stderr: $(head -c 200 "$T/save.err")"
finish
