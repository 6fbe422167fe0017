#!/usr/bin/env bash
# A bundle carries a version to a laptop with no repository and no network.
# The repository holds desk@1 (image S) and desk@2 (image T, sharing much of
# S).  With the repository moved away, desk@2 checked out from a bundle with
# no --have equals the online checkout byte for byte and verifies; a bundle
# with --have S (a manifest the laptop made, or the image itself) or --base
# desk@1 is smaller, holds the same objects either way, and checks out with
# --seed S; without the seed that checkout fails naming an object, writing
# nothing.  bundle show --json says what each holds and needs; a bundle
# refuses every operation that writes; -o - writes the same bytes as a file,
# an existing bundle is replaced only with --force, a bundle read from a
# pipe (-) shows and checks out as the file does, damage refused the same,
# and --split writes parts that read as the one bundle.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq cmp unshare

export VMSYNC_HOST=bundle-host VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
tdig=$(repo_digest "$timg") || fail "no digest for T"
sdig=$(repo_digest "$simg") || fail "no digest for S"
vm_ok "$T/imp1" import "$R" "$simg" --name desk -m "the seed"
vm_ok "$T/imp2" import "$R" "$timg" --name desk -m "the target"
vm_ok "$T/online" export "$R" desk -o "$T/online.img"
vm_ok "$T/s.manifest" manifest "$simg" -o "$T/s.vmsm"

L=9 # the level of every bundle but one: their sizes compare
vm_ok "$T/full" bundle create "$R" desk -o "$T/full.vmsb" --level $L --json
vm_ok "$T/have" bundle create "$R" desk@2 -o "$T/have.vmsb" --have "$T/s.vmsm" --level $L --json
vm_ok "$T/haveimg" bundle create "$R" desk -o "$T/haveimg.vmsb" --have "$simg" --level $L --json
vm_ok "$T/base" bundle create "$R" desk -o "$T/base.vmsb" --base desk@1 --level $L --json
vm_ok "$T/best" bundle create "$R" desk -o "$T/best.vmsb" --have "$T/s.vmsm" --json
vm_ok "$T/pipe" bundle create "$R" desk -o - --have "$T/s.vmsm" --level $L -q
for b in full have haveimg base best; do
    json_ok "$T/$b.out" || fail "bundle create $b --json is not JSON: $(head -c 200 "$T/$b.out")"
    size=$(stat -c %s "$T/$b.vmsb")
    [[ $(jget "$T/$b.out" .bytes_written) == "$size" ]] ||
        bad "$b: bytes_written $(jget "$T/$b.out" .bytes_written), the file has $size"
done
cmp -s "$T/pipe.out" "$T/have.vmsb" || bad "-o - wrote other bytes than -o FILE"
full_objects=$(jget "$T/full.out" .objects)
have_objects=$(jget "$T/have.out" .objects)
((full_objects > 0 && $(jget "$T/full.out" .objects_held) == 0)) || bad "full bundle: $(cat "$T/full.out")"
((have_objects < full_objects && $(jget "$T/have.out" .objects_held) > 0)) ||
    bad "--have S left nothing out: $(cat "$T/have.out")"
for b in haveimg base best; do
    [[ $(jget "$T/$b.out" .objects) == "$have_objects" ]] ||
        bad "$b holds $(jget "$T/$b.out" .objects) objects, --have S.vmsm $have_objects"
done
full_size=$(stat -c %s "$T/full.vmsb")
have_size=$(stat -c %s "$T/have.vmsb")
best_size=$(stat -c %s "$T/best.vmsb")
info "full bundle $full_size bytes; with --have S $have_size (level $L), $best_size (level 19)"
((have_size * 2 < full_size)) || bad "the --have bundle ($have_size) is not under half the full one ($full_size)"
((best_size <= have_size)) || bad "level 19 ($best_size) is larger than level $L ($have_size)"

# bundle show
vm_ok "$T/show-full" bundle show "$T/full.vmsb" --json
vm_ok "$T/show-have" bundle show "$T/have.vmsb" --json
vm_ok "$T/show-base" bundle show "$T/base.vmsb" --json
vm_ok "$T/show-text" bundle show "$T/have.vmsb"
for s in full have base; do json_ok "$T/show-$s.out" || fail "show $s --json is not JSON"; done
j=$T/show-have.out
[[ $(jget "$j" .image) == desk && $(jget "$j" .version) == 2 && $(jget "$j" .parent) == 1 ]] ||
    bad "show: not desk@2 with parent 1: $(cat "$j")"
[[ $(jget "$j" .canonical_digest) == "$tdig" ]] || bad "show: the digest is not T's"
[[ $(jget "$j" .signed) == false ]] || bad "show: signed without a signature"
[[ $(jget "$j" '.needs.held | join(",")') == "$sdig" && $(jget "$j" .needs.base) == null ]] ||
    bad "show --have: needs $(jq -c .needs "$j"), expected S's digest"
[[ $(jget "$j" .objects) == "$have_objects" ]] || bad "show: $(jget "$j" .objects) objects, create said $have_objects"
[[ $(jget "$j" .file_bytes) == "$have_size" ]] || bad "show: file_bytes is not the file's size"
[[ $(jq -c .needs "$T/show-full.out") == '{"base":null,"held":[]}' ]] || bad "show full: needs $(jq -c .needs "$T/show-full.out")"
[[ $(jq -c .needs "$T/show-base.out") == '{"base":1,"held":[]}' ]] || bad "show --base: needs $(jq -c .needs "$T/show-base.out")"
grep -q "^digest:   $tdig" "$T/show-text.out" || bad "show: no digest line: $(cat "$T/show-text.out")"
grep -q "images of canonical digest $sdig" "$T/show-text.out" || bad "show: does not say what it needs"

# An existing bundle is replaced only with --force.
cp "$T/full.vmsb" "$T/full.copy"
vm_expect "$T/again" 8 bundle create "$R" desk -o "$T/full.vmsb" --level 1
why=$(one_error_line "$T/again" full.vmsb "--force") || bad "an existing output: $why"
cmp -s "$T/full.vmsb" "$T/full.copy" || bad "a refused create changed the existing bundle"
vm_ok "$T/forced" bundle create "$R" desk -o "$T/full.copy" --level $L --force
cmp -s "$T/full.vmsb" "$T/full.copy" || bad "--force did not write the same bundle again"

# --split: parts of 1 MiB that together are the one bundle; written again
# with larger parts, the parts left over are removed.
vm_ok "$T/split" bundle create "$R" desk -o "$T/split.vmsb" --have "$T/s.vmsm" --level $L --split 1M
parts=("$T/split.vmsb" "$T"/split.vmsb.0*)
((${#parts[@]} == (have_size + 1048575) / 1048576)) || bad "${#parts[@]} parts for $have_size bytes in 1 MiB parts"
for p in "${parts[@]}"; do
    (($(stat -c %s "$p") <= 1048576)) || bad "$(basename "$p") is over 1 MiB"
done
cat "${parts[@]}" | cmp -s - "$T/have.vmsb" || bad "the parts together are not the unsplit bundle"
vm_ok "$T/split-show" bundle show "$T/split.vmsb" --json
[[ $(jget "$T/split-show.out" .file_bytes) == "$have_size" && $(jget "$T/split-show.out" .objects) == "$have_objects" ]] ||
    bad "show of the parts: $(cat "$T/split-show.out")"
mv "$T/split.vmsb.003" "$T/part3"
vm "$T/split-lost" bundle show "$T/split.vmsb"
((VM_RC == 4 || VM_RC == 5)) || bad "a missing part: show exited $VM_RC"
mv "$T/part3" "$T/split.vmsb.003"
vm_ok "$T/split2" bundle create "$R" desk -o "$T/split2.vmsb" --have "$T/s.vmsm" --level $L --split 1M
vm_ok "$T/split2b" bundle create "$R" desk -o "$T/split2.vmsb" --have "$T/s.vmsm" --level $L --split 2M --force
[[ ! -e $T/split2.vmsb.004 && -e $T/split2.vmsb.003 ]] || bad "--split 2M left the 1 MiB parts after its own: $(ls "$T" | grep split2 | tr '\n' ' ')"
vm_ok "$T/split2-show" bundle show "$T/split2.vmsb"
# Without --force, a file that would be read as a second part stays, and so
# does the user's file that the bundle's name would take; parts that FAT32
# cannot hold are refused.
echo "the user's own" >"$T/mine.vmsb.002"
vm "$T/split3" bundle create "$R" desk -o "$T/mine.vmsb" --have "$T/s.vmsm" --level $L
((VM_RC == 8)) || bad "a FILE.002 there: create exited $VM_RC"
why=$(one_error_line "$T/split3" mine.vmsb.002 "already exists") || bad "a FILE.002 there: $why"
[[ $(cat "$T/mine.vmsb.002") == "the user's own" && ! -e $T/mine.vmsb ]] || bad "a FILE.002 there was touched"
vm "$T/split4" bundle create "$R" desk -o "$T/big.vmsb" --split 4G
((VM_RC == 2)) || bad "--split 4G: exited $VM_RC, expected 2 (FAT32 holds 4 GiB less a byte)"
vm_ok "$T/split5" bundle create "$R" desk -o "$T/big.vmsb" --split 4294967295 --level 1

# The laptop: no repository, a cache of its own.
mv "$R" "$R.away"
export VMSYNC_CACHE=$T/laptop-cache
vm_ok "$T/air" checkout "$T/full.vmsb" desk -o "$T/air.img"
cmp "$T/air.img" "$T/online.img" >/dev/null || bad "the checkout from the full bundle differs from the online one"
vm_ok "$T/air-verify" verify "$T/full.vmsb" desk "$T/air.img"
vm_ok "$T/seeded" checkout "$T/have.vmsb" desk@2 -o "$T/seeded.img" --seed "$simg" --stats-json "$T/seeded.json"
cmp "$T/seeded.img" "$T/online.img" >/dev/null || bad "the checkout from the --have bundle differs from the online one"
(($(repo_stat "$T/seeded.json" bytes_from_seeds) > 0)) || bad "the seeded checkout took nothing from S"
[[ $(repo_stat "$T/seeded.json" objects_fetched) == "$have_objects" ]] ||
    bad "the seeded checkout fetched $(repo_stat "$T/seeded.json" objects_fetched) objects, the bundle has $have_objects"
# and in a network namespace of its own, where no address answers
timeout -k 10 "$VMSYNC_CMD_TIMEOUT" unshare --net "$VMSYNC" checkout "$T/have.vmsb" desk -o "$T/netless.img" \
    --seed "$simg" -q >"$T/netless.out" 2>"$T/netless.err" ||
    bad "the checkout with no network failed: $(head -c 300 "$T/netless.err")"
cmp "$T/netless.img" "$T/online.img" >/dev/null || bad "the checkout with no network differs from the online one"
vm_ok "$T/split-co" checkout "$T/split.vmsb" desk -o "$T/split.img" --seed "$simg"
cmp "$T/split.img" "$T/online.img" >/dev/null || bad "the checkout from the parts differs from the online one"
vm_ok "$T/best-co" export "$T/best.vmsb" desk -o "$T/best.img" --seed "$T/seeded.img"
cmp "$T/best.img" "$T/online.img" >/dev/null || bad "the export from the level-19 bundle differs"
vm_ok "$T/log" log "$T/have.vmsb" --json
[[ $(jq -r .digest "$T/log.out") == "$tdig" ]] || bad "log of a bundle: $(cat "$T/log.out")"

# From a pipe: the same contents, the same checkout; damage refused as from a file.
vm_ok "$T/show-pipe" bundle show - --json <"$T/have.vmsb"
cmp -s "$T/show-pipe.out" "$T/show-have.out" || bad "show - differs from show FILE: $(cat "$T/show-pipe.out")"
# (a process substitution: a real pipe, and vm runs in this shell, so VM_RC is its)
vm "$T/pipe-co" checkout - desk -o "$T/pipe.img" --seed "$simg" < <(cat "$T/have.vmsb")
((VM_RC == 0)) || bad "checkout - exited $VM_RC: $(head -c 300 "$T/pipe-co.err")"
cmp "$T/pipe.img" "$T/online.img" >/dev/null || bad "the checkout from a pipe differs from the online one"
python3 - "$T/have.vmsb" "$T/flipped.vmsb" <<'EOF2'
import sys, tarfile
raw = bytearray(open(sys.argv[1], 'rb').read())
m = [m for m in tarfile.open(sys.argv[1]) if m.name.startswith('objects-')][0]
raw[m.offset_data + m.size // 3] ^= 0x10
open(sys.argv[2], 'wb').write(raw)
EOF2
# (vmsync stops reading at the damage: cat's broken pipe is expected)
vm "$T/pipe-bad" checkout - desk -o "$T/pipe-bad.img" --seed "$simg" < <(cat "$T/flipped.vmsb" 2>/dev/null || true)
((VM_RC == 5)) || bad "a damaged bundle from a pipe: exit $VM_RC, expected 5"
why=$(one_error_line "$T/pipe-bad" objects-000001.zst) || bad "a damaged bundle from a pipe: $why"
[[ ! -e $T/pipe-bad.img && ! -e $T/pipe-bad.img.vmsync-part ]] || bad "a damaged bundle from a pipe wrote its output"

# Without the seed it lacks: refused before writing, naming an object.
vm_expect "$T/noseed" 5 checkout "$T/have.vmsb" desk -o "$T/noseed.img"
why=$(one_error_line "$T/noseed" desk "no seed holds them") || bad "no seed: $why"
grep -Eq 'object [0-9a-f]{64}' "$T/noseed.err" || bad "no seed: the error names no object: $(cat "$T/noseed.err")"
for f in "$T/noseed.img" "$T/noseed.img.vmsync-part" "$T/noseed.img.vmsync-journal"; do
    [[ ! -e $f ]] || bad "a refused checkout left $(basename "$f")"
done

# A bundle is read-only.
vm_expect "$T/ro-checkin" 2 checkin "$T/full.vmsb" desk "$T/air.img"
why=$(one_error_line "$T/ro-checkin" full.vmsb "read-only") || bad "checkin into a bundle: $why"
vm_expect "$T/ro-import" 2 import "$T/full.vmsb" "$simg" --name other
why=$(one_error_line "$T/ro-import" full.vmsb "read-only") || bad "import into a bundle: $why"
vm_expect "$T/other" 9 checkout "$T/full.vmsb" other -o "$T/other.img"
vm_expect "$T/v1" 9 checkout "$T/full.vmsb" desk@1 -o "$T/v1.img"
[[ ! -e $T/other.img && ! -e $T/v1.img ]] || bad "a refused checkout wrote its output"
mv "$R.away" "$R"
vm_expect "$T/notbundle" 2 bundle show "$R"
finish
