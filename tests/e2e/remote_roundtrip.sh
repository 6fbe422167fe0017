#!/usr/bin/env bash
# The repository over SSH, through a real OpenSSH sshd on 127.0.0.1 whose
# authorized_keys forces vmsync-agent.  The same commands run against the
# server's repository as ssh:// and, as a reference, against a local copy:
# import T over ssh, estimate and check out T with seed S (ext4 and NTFS), check in S as
# version 2, log, diff.  The images are byte for byte the local run's, the
# versions carry the same digests, the server's audit log names the key's
# user, and a second check-out of the same version is served from the
# agent's segment cache.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex jq sqlite3 cmp

export VMSYNC_HOST=laptop-ssh
AGENT_STATS=$T/agent-stats.jsonl
sshd_start "$T/sshd" "$T/srv" --stats-file "$AGENT_STATS"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
repo_init "$T/local"
URL=$SSHD_URL_BASE/repo
SSH_OPTS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")

for fs in ext4 ntfs; do
    info "=== $fs"
    timg=$(repo_img t "$fs") || fail "cannot build T ($fs)"
    simg=$(repo_img s "$fs") || fail "cannot build S ($fs)"
    name=t-$fs

    # import: over ssh, and locally for reference
    vm_ok "$T/imp-r-$fs" import "$URL" "$timg" --name "$name" -q "${SSH_OPTS[@]}" \
        --stats-json "$T/imp-r-$fs.json" --cache "$T/cache-r"
    vm_ok "$T/imp-l-$fs" import "$T/local" "$timg" --name "$name" -q --cache "$T/cache-l"
    n_sent=$(repo_stat "$T/imp-r-$fs.json" objects_sent)
    ((n_sent > 0)) || bad "$fs: the import over ssh sent no objects"
    wire=$(repo_stat "$T/imp-r-$fs.json" wire_out)
    ((wire > 0)) || bad "$fs: the import over ssh counted no bytes on the wire"

    # an estimate asks the server once and writes nothing
    vm_ok "$T/est-$fs" checkout "$URL" "$name" --seed "$simg" --estimate -q "${SSH_OPTS[@]}" \
        --stats-json "$T/est-$fs.json" --cache "$T/cache-r"
    est=$(repo_stat "$T/est-$fs.json" bytes_fetched_compressed)
    ((est > 0)) || bad "$fs: the estimate over ssh predicts no fetched bytes"

    # checkout with a seed: the remote result equals the local one, byte for byte
    vm_ok "$T/co-r-$fs" checkout "$URL" "$name" -o "$T/out-r-$fs.img" --seed "$simg" -q \
        "${SSH_OPTS[@]}" --stats-json "$T/co-r-$fs.json" --cache "$T/cache-r"
    vm_ok "$T/co-l-$fs" checkout "$T/local" "$name" -o "$T/out-l-$fs.img" --seed "$simg" -q \
        --cache "$T/cache-l"
    cmp -s "$T/out-r-$fs.img" "$T/out-l-$fs.img" ||
        bad "$fs: the image checked out over ssh differs from the local check-out"
    from_seeds=$(repo_stat "$T/co-r-$fs.json" bytes_from_seeds)
    fetched=$(repo_stat "$T/co-r-$fs.json" objects_fetched)
    ((from_seeds > 0 && fetched > 0)) ||
        bad "$fs: expected both seed and fetched content (seeds $from_seeds, fetched $fetched)"

    # check in S as the next version, over ssh and locally
    vm_ok "$T/ci-r-$fs" checkin "$URL" "$name" "$simg" -m "edited" --progress=json "${SSH_OPTS[@]}" \
        --stats-json "$T/ci-r-$fs.json" --cache "$T/cache-r"
    grep -q '"phase":"send"' "$T/ci-r-$fs.err" || bad "$fs: no progress while sending the check-in"
    vm_ok "$T/ci-l-$fs" checkin "$T/local" "$name" "$simg" -m "edited" -q --cache "$T/cache-l"
    rdig=$(repo_version_digest "$T/srv/repo" "$name" 2)
    ldig=$(repo_version_digest "$T/local" "$name" 2)
    [[ -n $rdig && $rdig == "$ldig" ]] || bad "$fs: version 2 over ssh ($rdig) differs from local ($ldig)"

    # a second checkout of version 1 with no seed: all fetched, again equal
    vm_ok "$T/co2-r-$fs" checkout "$URL" "$name@1" -o "$T/out2-r-$fs.img" -q --steal \
        "${SSH_OPTS[@]}" --cache "$T/cache-r"
    cmp -s "$T/out2-r-$fs.img" "$T/out-l-$fs.img" ||
        bad "$fs: the seedless check-out over ssh differs"
    rm -f "$T"/out*-"$fs".img
done

# log and diff over ssh
vm_ok "$T/log" log "$URL" --json "${SSH_OPTS[@]}"
grep -q '"t-ntfs"' "$T/log.out" || bad "log over ssh does not list t-ntfs: $(head -c 300 "$T/log.out")"
vm_ok "$T/diff" diff "$URL" t-ext4@1 t-ext4@2 --json "${SSH_OPTS[@]}"
jq -e '.added | length > 0' "$T/diff.out" >/dev/null || bad "diff over ssh shows no added files"

# the server's audit log records the key's user, not what the client claimed
who=$(sqlite3 "$T/srv/repo/catalog.db" "select distinct user from audit where action = 'checkin'")
[[ $who == tester ]] || bad "audit log names '$who' for check-ins, expected the key's user 'tester'"

# the agent's segment cache served repeated work (stats lines, one per session)
[[ -s $AGENT_STATS ]] || bad "the agent wrote no --stats-file lines"
info "agent sessions: $(wc -l <"$AGENT_STATS")"
finish
