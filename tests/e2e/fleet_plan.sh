#!/usr/bin/env bash
# vmsync fleet plan and fleet status:
#   - a simulated fleet of 300 laptops in 8 branches (bench/fleet_gen.py): the
#     JSON is one well-formed document with every laptop and branch, the
#     schedule's makespan is never worse than everyone at once (and beats it
#     there), every laptop is ready within it, and the server's bytes are the
#     branches' upstream bytes;
#   - real seeds, locally and over ssh://: desk@1 is tree S, desk@2 tree T; a
#     laptop holding desk@1 (a version), one holding nothing, and one holding
#     the manifest file of T: each predicted figure (objects, raw and stored
#     bytes) is what the export from the image behind the seed then fetches
#     (--stats-json); a reflector's upstream is the union of its laptops'
#     needs, once; a manifest as a checkout's seed plans, and the run refuses
#     it (exit 2);
#   - hostile fleet files: malformed JSON, an unknown key, a duplicate key,
#     deep nesting, an unknown branch, two laptops of one name: exit 4, the
#     message naming the file and line; a missing file exits 3;
#   - fleet status: the laptop that checked out desk@2 holds it with its
#     lease; after desk@3 it has an update pending; text and JSON.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq python3

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=admin
GEN=$(dirname "$0")/../../bench/fleet_gen.py

info "=== a simulated fleet of 300 laptops"
python3 "$GEN" 300 8 >"$T/sim.json" || fail "fleet_gen.py failed"
vm_ok "$T/sim" fleet plan "$T/sim.json" --json
p=$T/sim.out
json_ok "$p" || fail "fleet plan --json is not JSON: $(head -c 300 "$p")"
[[ $(jq -s length "$p") == 1 ]] || bad "fleet plan --json printed more than one document"
jq -e '(.laptops | length) == 300 and (.branches | length) == 8' "$p" >/dev/null ||
    bad "the plan does not list 300 laptops in 8 branches"
jq -e '.makespan > 0 and .makespan <= .makespan_all_at_once' "$p" >/dev/null ||
    bad "the schedule ($(jget "$p" .makespan) s) is worse than everyone at once ($(jget "$p" .makespan_all_at_once) s)"
jq -e '.makespan < .makespan_all_at_once' "$p" >/dev/null ||
    bad "the schedule does not beat everyone at once on the generated fleet"
jq -e '[.laptops[] | select(.ready > $m + 0.001 or .ready < .start)] | length == 0' \
    --argjson m "$(jget "$p" .makespan)" "$p" >/dev/null || bad "a laptop is ready after the makespan, or before it starts"
jq -e '([.branches[].upstream_bytes] | add) == .server_bytes' "$p" >/dev/null ||
    bad "the server's bytes are not the sum of the branches' upstream bytes"
jq -e '[.laptops[].order] | sort == [range(1; 301)]' "$p" >/dev/null || bad "the order is not 1..300"
jq -e '.ranking | IN("window-first", "largest-first", "all-at-once")' "$p" >/dev/null ||
    bad "ranking $(jget "$p" .ranking)"
vm_ok "$T/simtext" fleet plan "$T/sim.json"
grep -q "^schedule (.*): all ready in .*; everyone at once: " "$T/simtext.out" ||
    bad "the text plan has no schedule line: $(head -3 "$T/simtext.out")"
(($(grep -c '^  *[0-9]*  lap[0-9]* (' "$T/simtext.out") == 300)) || bad "the text plan does not list 300 laptops"

info "=== hostile fleet files"
hostile() { # NAME TEXT WANT-IN-MESSAGE
    printf '%s' "$2" >"$T/h-$1.json"
    vm_expect "$T/h-$1" 4 fleet plan "$T/h-$1.json" || return 0
    grep -q "h-$1.json: .*$3" "$T/h-$1.err" || bad "$1: the message does not say '$3': $(cat "$T/h-$1.err")"
}
ok_head='{"image":"desk","server":{"uplink":"100Mbit"},"branches":[{"name":"b"}],'
hostile comma "$ok_head\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1},]}" "line 1, column"
hostile unknown "$ok_head\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"byte\":1}]}" "byte: unknown key"
hostile twice "$ok_head\"laptops\":[{\"name\":\"a\",\"name\":\"c\",\"branch\":\"b\",\"bytes\":1}]}" "twice"
hostile deep "$(printf '%.0s[' {1..100})" "nested deeper"
hostile branch "$ok_head\"laptops\":[{\"name\":\"a\",\"branch\":\"x\",\"bytes\":1}]}" "no branch of this name"
hostile names "$ok_head\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1},{\"name\":\"a\",\"branch\":\"b\",\"bytes\":2}]}" "two laptops"
hostile rate "${ok_head/100Mbit/0}\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1}]}" "uplink"
hostile window "$ok_head\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1,\"online\":[\"25:00-26:00\"]}]}" "online"
hostile nul "$ok_head\"laptops\":[{\"name\":\"a\\u0000b\",\"branch\":\"b\",\"bytes\":1}]}" "u0000"
hostile warm "${ok_head/\"name\":\"b\"/\"name\":\"b\",\"warm\":[\"true\"]}\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1}]}" \
    "only a branch with a reflector"
linked='"name":"b","offline":true,"link":{"rate":1}'
hostile offline "${ok_head/\"name\":\"b\"/$linked}\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1}]}" \
    "link: an offline branch has no link"
hostile words "$ok_head\"laptops\":[{\"name\":\"a\",\"branch\":\"b\",\"bytes\":1,\"run\":[\"ssh\",\"\"]}]}" "an empty word"
vm_expect "$T/missing" 3 fleet plan "$T/no-such.json"

info "=== real seeds"
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/tman" manifest "$timg" -o "$T/t.vmsm" -q

for where in local ssh; do
    info "--- $where"
    repo_for "$where"
    # the admin imports on the server; the laptops fetch over $url
    vm_ok "$T/$where.i1" import "$R" "$simg" --name desk -q
    vm_ok "$T/$where.i2" import "$R" "$timg" --name desk -q
    cat >"$T/$where.fleet.json" <<JSON
{"repository": "$url", "image": "desk", "start": "08:00", "server": {"uplink": "100Mbit"},
 "branches": [{"name": "office", "link": {"rate": "10Mbit", "rtt_ms": 30}, "reflector": true},
              {"name": "hq"}],
 "laptops": [
  {"name": "has-v1", "branch": "office", "versions": ["desk@1"], "link": {"rate": "54Mbit", "rtt_ms": 3}},
  {"name": "has-none", "branch": "office", "online": ["09:00-10:00"]},
  {"name": "has-t", "branch": "hq", "manifests": ["t.vmsm"]},
  {"name": "hq-none", "branch": "hq"}]}
JSON
    vm_ok "$T/$where.plan" fleet plan "$T/$where.fleet.json" --json "${opts[@]}"
    plan=$T/$where.plan.out
    json_ok "$plan" || fail "$where: fleet plan --json: $(head -c 300 "$plan")"
    [[ $(jget "$plan" .version) == 2 ]] || bad "$where: the plan rolls out desk@$(jget "$plan" .version), not @2"
    lap() { jq -r --arg n "$1" ".laptops[] | select(.name == \$n) | .$2" "$plan"; }
    declare -A seeds=([has-v1]="$simg" [has-none]="" [has-t]="$timg" [hq-none]="")
    for l in has-v1 has-none has-t; do
        seed=()
        [[ -z ${seeds[$l]} ]] || seed=(--seed "${seeds[$l]}")
        vm_ok "$T/$where.$l" export "$url" desk -o "$T/$where.$l.img" "${seed[@]}" -q \
            --stats-json "$T/$where.$l.json" "${opts[@]}"
        for pair in bytes_raw:bytes_fetched_raw objects:objects_fetched bytes_from_seeds:bytes_from_seeds; do
            a=$(lap "$l" "${pair%%:*}")
            b=$(repo_stat "$T/$where.$l.json" "${pair#*:}")
            [[ $a == "$b" ]] || bad "$where: $l: the plan's ${pair%%:*} is $a, the export's ${pair#*:} $b"
        done
        if [[ $where == local ]]; then # over ssh:// the wire recompresses
            a=$(lap "$l" bytes)
            b=$(repo_stat "$T/$where.$l.json" bytes_fetched_compressed)
            [[ $a == "$b" ]] || bad "$where: $l: the plan's bytes are $a, the export fetched $b"
        fi
    done
    (($(lap has-t bytes) == 0 && $(lap has-v1 bytes) > 0 && $(lap has-v1 bytes) < $(lap has-none bytes))) ||
        bad "$where: bytes has-t $(lap has-t bytes), has-v1 $(lap has-v1 bytes), has-none $(lap has-none bytes)"
    office_up=$(jq -r '.branches[] | select(.name == "office") | .upstream_bytes' "$plan")
    [[ $office_up == "$(lap has-none bytes)" ]] ||
        bad "$where: the reflector's upstream is $office_up, not the union (has-none's $(lap has-none bytes))"
    hq_up=$(jq -r '.branches[] | select(.name == "hq") | .upstream_bytes' "$plan")
    (( hq_up == $(lap hq-none bytes) )) || bad "$where: hq's upstream $hq_up is not the sum of its laptops'"
    jq -e '.makespan <= .makespan_all_at_once and .makespan >= 3600' "$plan" >/dev/null ||
        bad "$where: makespan $(jget "$plan" .makespan) (all at once $(jget "$plan" .makespan_all_at_once)); has-none is online from 09:00"

    # a manifest as a seed: the plan counts on it, the run refuses it
    vm_ok "$T/$where.est" checkout "$url" desk --seed "$T/t.vmsm" --estimate --json "${opts[@]}"
    [[ $(jget "$T/$where.est.out" .objects_to_fetch) == 0 ]] || bad "$where: a plan with T's manifest fetches something"
    vm_expect "$T/$where.run" 2 checkout "$url" desk -o "$T/$where.never.img" --seed "$T/t.vmsm" "${opts[@]}"
    grep -q "a manifest, not an image" "$T/$where.run.err" || bad "$where: $(cat "$T/$where.run.err")"
    [[ ! -e $T/$where.never.img ]] || bad "$where: the refused checkout wrote its output"

    info "--- $where: fleet status"
    VMSYNC_HOST=lap-a vm_ok "$T/$where.co" checkout "$url" desk -o "$T/$where.lap-a.img" --seed "$timg" -q "${opts[@]}"
    vm_ok "$T/$where.st" fleet status "$url" --json "${opts[@]}"
    st=$T/$where.st.out
    json_ok "$st" || fail "$where: fleet status --json: $(head -c 300 "$st")"
    jq -e '[.laptops[] | select(.host == "lap-a" and .image == "desk" and .version == 2 and
            .lease.version == 2 and .pending == null and .latest == 2)] | length == 1' "$st" >/dev/null ||
        bad "$where: fleet status does not show lap-a holding desk@2 with its lease: $(cat "$st")"
    jq -e '[.laptops[] | select(.host == "admin")] | length == 0' "$st" >/dev/null ||
        bad "$where: the admin's imports and exports are listed as a laptop"
    vm_ok "$T/$where.i3" import "$R" "$simg" --name desk -q -m "v3"
    vm_ok "$T/$where.st3" fleet status "$url" --json "${opts[@]}"
    jq -e '[.laptops[] | select(.host == "lap-a" and .latest == 3 and (.pending | startswith("update")))] | length == 1' \
        "$T/$where.st3.out" >/dev/null || bad "$where: after desk@3, lap-a has no update pending: $(cat "$T/$where.st3.out")"
    vm_ok "$T/$where.stt" fleet status "$url" "${opts[@]}"
    grep -q "@lap-a  desk@2 (latest @3)  lease: @2 since .* pending: update" "$T/$where.stt.out" ||
        bad "$where: fleet status text: $(cat "$T/$where.stt.out")"
done
finish
