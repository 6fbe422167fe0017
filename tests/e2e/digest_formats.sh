#!/usr/bin/env bash
# The canonical digest does not depend on the container format (raw, qcow2,
# vmdk, vhdx of the same disk), the manifest is deterministic, and a saved
# manifest (-o) shows the same JSON as the direct --json (with and without
# --layout).
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync
need_cmd qemu-img qemu-nbd

for base in ext4-gpt ntfs-gpt; do
    raw=$(img "$base") || fail "cannot build $base"
    manifest_json "$T/$base.raw" "$raw"
    d_raw=$(jget "$T/$base.raw.out" .digest)
    [[ $d_raw =~ ^[0-9a-f]{64}$ ]] || bad "$base: raw digest is not hex: $d_raw"
    info "$base raw digest $d_raw"

    # deterministic: a second run gives the same JSON
    manifest_json "$T/$base.raw2" "$raw"
    cmp -s "$T/$base.raw.out" "$T/$base.raw2.out" || bad "$base: two runs on the same image give different JSON"

    for fmt in qcow2 vmdk vhdx; do
        conv=$(img "$base.$fmt") || fail "cannot build $base.$fmt"
        vm "$T/$base.$fmt" manifest "$conv" --json
        if ((VM_RC != 0)); then
            bad "$base.$fmt: vmsync manifest exited $VM_RC: $(head -c 300 "$T/$base.$fmt.err" | tr '\n' ' ')"
            continue
        fi
        d=$(jget "$T/$base.$fmt.out" .digest)
        [[ $d == "$d_raw" ]] || bad "$base.$fmt: digest $d != raw digest $d_raw"
        f=$(jget "$T/$base.$fmt.out" .image.format)
        [[ $f == "$fmt" ]] || bad "$base.$fmt: image.format is '$f', expected $fmt"
        # everything but the container format is the same
        if ! diff -q <(jq -S 'del(.image.format)' "$T/$base.raw.out") \
            <(jq -S 'del(.image.format)' "$T/$base.$fmt.out") >/dev/null; then
            bad "$base.$fmt: manifest differs from the raw one beyond image.format: $(diff <(jq -S 'del(.image.format)' "$T/$base.raw.out") <(jq -S 'del(.image.format)' "$T/$base.$fmt.out") | head -5 | tr '\n' '|')"
        fi
    done

    # saved manifest round trip
    vm "$T/$base.save" manifest "$raw" -o "$T/$base.vmm"
    if ((VM_RC != 0)) || [[ ! -s $T/$base.vmm ]]; then
        bad "$base: vmsync manifest -o exited $VM_RC (file $(stat -c %s "$T/$base.vmm" 2>/dev/null || echo missing)): $(head -c 300 "$T/$base.save.err")"
        continue
    fi
    vm "$T/$base.show" manifest show "$T/$base.vmm" --json
    if ((VM_RC != 0)); then
        bad "$base: manifest show --json exited $VM_RC: $(head -c 300 "$T/$base.show.err")"
    elif ! cmp -s <(jq -S . "$T/$base.raw.out") <(jq -S . "$T/$base.show.out"); then
        bad "$base: manifest show --json differs from manifest --json: $(diff <(jq -S . "$T/$base.raw.out") <(jq -S . "$T/$base.show.out") | head -6 | tr '\n' '|')"
    fi
    manifest_json "$T/$base.lay" "$raw" --layout
    vm "$T/$base.showlay" manifest show "$T/$base.vmm" --json --layout
    if ((VM_RC != 0)); then
        bad "$base: manifest show --json --layout exited $VM_RC: $(head -c 300 "$T/$base.showlay.err")"
    elif ! cmp -s <(jq -S . "$T/$base.lay.out") <(jq -S . "$T/$base.showlay.out"); then
        bad "$base: manifest show --json --layout differs from manifest --json --layout: $(diff <(jq -S . "$T/$base.lay.out") <(jq -S . "$T/$base.showlay.out") | head -6 | tr '\n' '|')"
    fi
    # without --layout there is no layout key
    if jq -e 'has("layout")' "$T/$base.raw.out" >/dev/null; then
        bad "$base: --json without --layout has a layout key"
    fi
    # plain show works too
    vm "$T/$base.showtxt" manifest show "$T/$base.vmm"
    ((VM_RC == 0)) || bad "$base: manifest show (text) exited $VM_RC"
done
finish
