#!/usr/bin/env bash
# checkout --estimate prints the checkout's plan, locally and over ssh://:
#   - with --json, one object holding every figure (what comes from the
#     seeds, what is fetched raw and as stored, the objects, the time at
#     --rate); it writes nothing and takes no lease;
#   - the real checkout then moves exactly what the plan named;
#   - the text form gives "about N s at RATE" from --rate, else --bwlimit;
#   - a plan over the finished OUT says it holds the version already, and
#     one over a file vmsync did not write is refused as the checkout is
#     (exit 8); a bad --rate is bad usage (exit 2).
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq sqlite3

export VMSYNC_HOST=laptop-plan VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"

# the checkout's figure for each figure of the plan
declare -A RUN_KEY=([bytes_from_seeds]=bytes_from_seeds [objects_from_seeds]=objects_from_seeds
    [bytes_to_fetch_raw]=bytes_fetched_raw [bytes_to_fetch_stored]=bytes_fetched_compressed
    [objects_to_fetch]=objects_fetched [bytes_zero]=bytes_zero [image_size]=image_size
    [version]=version [canonical_digest]=canonical_digest)

for where in local ssh; do
    info "=== $where"
    repo_for "$where"
    vm_ok "$T/$where.import" import "$url" "$timg" --name t -q "${opts[@]}"
    out=$T/$where.img

    vm_ok "$T/$where.plan" checkout "$url" t -o "$out" --seed "$simg" --estimate --json --rate 2M "${opts[@]}"
    plan=$T/$where.plan.out
    json_ok "$plan" || fail "$where: --estimate --json did not print JSON: $(head -c 300 "$plan")"
    [[ $(jq -s length "$plan") == 1 ]] || bad "$where: --estimate --json printed more than one object"
    [[ $(jget "$plan" .image) == t && $(jget "$plan" .version) == 1 ]] ||
        bad "$where: the plan names $(jget "$plan" .image)@$(jget "$plan" .version), not t@1"
    for k in "${!RUN_KEY[@]}" bytes_resumed planning_seconds; do
        [[ $(jget "$plan" ".$k") != null ]] || bad "$where: the plan has no $k"
    done
    fetch=$(jget "$plan" .bytes_to_fetch_stored)
    ((fetch > 0 && $(jget "$plan" .bytes_from_seeds) > 0)) ||
        bad "$where: the plan takes nothing from S or fetches nothing: $(cat "$plan")"
    (($(jget "$plan" .bytes_resumed) == 0)) || bad "$where: a first plan counts resumed bytes"
    [[ $(jget "$plan" .in_place) == false ]] || bad "$where: the plan says OUT holds the version already"
    [[ $(jget "$plan" .rate) == $((2 << 20)) ]] || bad "$where: the plan's rate is $(jget "$plan" .rate)"
    jq -e --argjson f "$fetch" '(.seconds_at_rate - $f / 2097152) | fabs < 0.001' "$plan" >/dev/null ||
        bad "$where: seconds_at_rate $(jget "$plan" .seconds_at_rate) is not $fetch bytes at 2 MiB/s"
    for f in "$out" "$out.vmsync-part" "$out.vmsync-journal"; do
        [[ ! -e $f ]] || bad "$where: --estimate created $(basename "$f")"
    done
    [[ -z $(repo_lease "$R") ]] || bad "$where: --estimate took the lease: $(repo_lease "$R")"

    # the text form, its rate from --bwlimit
    vm_ok "$T/$where.text" checkout "$url" t --seed "$simg" --estimate --bwlimit 1M "${opts[@]}"
    secs=$(((fetch + (1 << 20) - 1) >> 20))
    grep -q "to fetch (.* objects, .* compressed), about $secs s at 1.0 MiB/s\$" "$T/$where.text.out" ||
        bad "$where: --estimate --bwlimit 1M does not say about $secs s: $(cat "$T/$where.text.out")"
    vm_ok "$T/$where.norate" checkout "$url" t --seed "$simg" --estimate "${opts[@]}"
    ! grep -q "about" "$T/$where.norate.out" || bad "$where: a time without a rate: $(cat "$T/$where.norate.out")"

    # the checkout moves what the plan said
    vm_ok "$T/$where.co" checkout "$url" t -o "$out" --seed "$simg" -q --stats-json "$T/$where.co.json" "${opts[@]}"
    for k in "${!RUN_KEY[@]}"; do
        p=$(jget "$plan" ".$k")
        r=$(repo_stat "$T/$where.co.json" "${RUN_KEY[$k]}")
        [[ $p == "$r" ]] || bad "$where: the plan's $k is $p, the checkout's ${RUN_KEY[$k]} $r"
    done

    # a plan over the finished OUT, and over a file vmsync did not write
    vm_ok "$T/$where.again" checkout "$url" t -o "$out" --seed "$simg" --estimate --json "${opts[@]}"
    [[ $(jget "$T/$where.again.out" .in_place) == true && $(jget "$T/$where.again.out" .objects_to_fetch) == 0 ]] ||
        bad "$where: a plan over the finished OUT: $(cat "$T/$where.again.out")"
    echo "the user's own file" >"$T/$where.own"
    vm_expect "$T/$where.own" 8 checkout "$url" t -o "$T/$where.own" --estimate "${opts[@]}"
    grep -qx "the user's own file" "$T/$where.own" || bad "$where: the plan touched the user's file"
done

vm_expect "$T/badrate" 2 checkout "$url" t --estimate --rate fast "${opts[@]}"
grep -q -- "--rate" "$T/badrate.err" || bad "a bad --rate is not named: $(cat "$T/badrate.err")"
finish
