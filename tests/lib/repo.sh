# shellcheck shell=bash
# Helpers for the repository end-to-end tests (tests/e2e/repo_*.sh).  Source it
# after common.sh:
#
#   source "$(dirname "$0")/../lib/common.sh"
#   source "$TESTS_LIB/repo.sh"
#
# It brings images.sh (the per-run cache, mkimg_*), and adds:
#
#   repo_tree KIND          source tree KIND (t, s, big), built once per run
#   repo_img KIND FS [FMT]  GPT disk with one FS (ext4 or ntfs) partition holding
#                           tree KIND, raw or FMT (qcow2, ...); built once per run
#   repo_init DIR           vmsync init (fatal on failure)
#   repo_for WHERE          a new repository $T/srv/WHERE for a test run "local"
#                           or over "ssh" (sshd.sh): sets R, url and opts (the
#                           ssh options vmsync needs; empty locally)
#   repo_digest IMAGE       canonical digest of an image or manifest file
#   repo_stat FILE KEY      a number from a --stats-json file
#   repo_loop IMAGE [ro]    attaches the image's partition (REPO_PART_START,
#                           REPO_PART_BYTES) to a loop device, prints it
#   repo_mount DEV FS DIR [ro]  mounts (ext4: kernel; ntfs: ntfs-3g)
#   repo_umount DIR         unmounts (and waits for ntfs-3g to let go)
#   repo_unloop DEV         detaches
#   repo_fsck IMAGE FS      e2fsck -fn / ntfsfix -n on the partition of a raw
#                           image; prints the tool's output on failure
#   repo_bg CMD...          runs CMD in the background, remembers its pid (set
#                           REPO_BG_PID) so the exit trap can kill it
#
# Loop devices, mounts and background processes made through these helpers are
# undone by the exit trap, whatever way the test ends.
#
# Trees (deterministic; every timestamp fixed):
#   t    ~47 MiB: docs/d0..d9 (150 small files), media/setA, setB, setC (20
#        files of 256 KiB..1.4 MiB), mail/mbox (30 MiB), small/ (60 files under
#        700 bytes: resident on NTFS), links/ (a hard link pair, a symlink),
#        emptydir/
#   s    a seed sharing much of t at other offsets: made in another order with
#        extra files first (00-extra/, zz-other/), setA moved to backup/A/,
#        docs/d7 and d8 and media/setC left out, the mbox as
#        mail-archive/mbox.old with 8 pages changed and its last MiB cut
#   big  324 MiB: 36 files of 9 MiB random data in bulk/, plus a few small ones

source "$TESTS_LIB/images.sh"

REPO_PART_START=1048576
REPO_PART_BYTES=$((128 << 20))
REPO_BIG_PART_BYTES=$((400 << 20))

# ---- trees and images --------------------------------------------------------

_repo_build_tree() {
    local kind=$1 dir
    dir="$(_cache)/repo-tree-$kind"
    rm -rf "$dir"
    mkdir -p "$dir"
    python3 - "$kind" "$dir" <<'EOF' || return 1
import os, random, sys
kind, root = sys.argv[1], sys.argv[2]

def data(seed, size):
    return random.Random(seed).randbytes(size)

def w(rel, b):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(b)

# the files of tree t, as (path, seed, size)
T = []
for i in range(10):
    for j in range(15):
        T.append(('docs/d%d/note%02d.txt' % (i, j), 100000 + i * 100 + j, 1000 + ((i * 15 + j) * 977) % 20000))
for k in range(8):
    T.append(('media/setA/a%d.bin' % k, 200 + k, (256 + 160 * k) << 10))
for k in range(8):
    T.append(('media/setB/b%d.bin' % k, 300 + k, (300 + 150 * k) << 10))
for k in range(4):
    T.append(('media/setC/c%d.bin' % k, 400 + k, 600 << 10))
for n in range(60):
    T.append(('small/s%02d' % n, 500 + n, 10 + n * 11))
T.append(('links/hl-a', 900, 5000))
MBOX = ('mail/mbox', 7001, 30 << 20)

if kind == 't':
    for p, s, n in T:
        w(p, data(s, n))
    w(MBOX[0], data(MBOX[1], MBOX[2]))
    os.makedirs(os.path.join(root, 'emptydir'))
    os.link(os.path.join(root, 'links/hl-a'), os.path.join(root, 'links/hl-b'))
    os.symlink('../mail/mbox', os.path.join(root, 'links/sym'))
elif kind == 's':
    # extra content first, so that everything shared lands elsewhere
    for k in range(4):
        w('00-extra/fill%d.bin' % k, data(600 + k, 1536 << 10))
    mb = bytearray(data(MBOX[1], MBOX[2]))
    r = random.Random(42)
    for i in range(8):
        off = (i * 3700 + 123) * 1024 // 4096 * 4096
        mb[off:off + 4096] = r.randbytes(4096)
    w('mail-archive/mbox.old', bytes(mb[:MBOX[2] - (1 << 20)]))
    keep = []
    for p, s, n in T:
        if p.startswith(('docs/d7/', 'docs/d8/', 'media/setC/')):
            continue
        if p.startswith('media/setA/'):
            p = 'backup/A/' + p.split('/')[-1]
        keep.append((p, s, n))
    for p, s, n in reversed(keep):
        w(p, data(s, n))
    os.symlink('../mail-archive/mbox.old', os.path.join(root, 'links/sym'))
    w('zz-other/other.bin', data(650, 2 << 20))
elif kind == 'big':
    for k in range(36):
        w('bulk/f%02d.bin' % k, data(10000 + k, 9 << 20))
    for n in range(20):
        w('etc/conf%02d' % n, data(11000 + n, 300 + 40 * n))
else:
    sys.exit('unknown tree ' + kind)
EOF
    mktree_fix_times "$dir"
}

repo_tree() {
    _locked "repo-tree-$1" _repo_build_tree "$1" || return 1
    printf '%s\n' "$(_cache)/repo-tree-$1"
}

# repo_part_bytes KIND
repo_part_bytes() {
    if [[ $1 == big ]]; then echo "$REPO_BIG_PART_BYTES"; else echo "$REPO_PART_BYTES"; fi
}

_repo_build_img() {
    local kind=$1 fs=$2 fmt=$3 c out t pb s1
    c=$(_cache)
    out="$c/repo-$kind-$fs"
    if [[ $fmt != raw ]]; then
        repo_img "$kind" "$fs" >/dev/null || return 1
        mkimg_convert "$out" "$fmt" "$out.$fmt.tmp" && mv "$out.$fmt.tmp" "$out.$fmt"
        return
    fi
    t=$(repo_tree "$kind") || return 1
    pb=$(repo_part_bytes "$kind")
    s1=$((REPO_PART_START / 512))
    mkimg_disk "$out.tmp" $((REPO_PART_START + pb + (1 << 20))) gpt \
        "$s1 $((pb / 512)) ${fs/ext4/linux} data" || return 1
    if [[ $fs == ext4 ]]; then
        mkimg_ext4 "$out.tmp" "$REPO_PART_START" "$pb" "$t" -N 8192 || return 1
    else
        mkimg_ntfs_part "$out.tmp.part" "$pb" "$t" "$s1" &&
            mkimg_place "$out.tmp" "$out.tmp.part" "$REPO_PART_START" || return 1
        rm -f "$out.tmp.part"
    fi
    mv "$out.tmp" "$out"
}

# repo_img KIND FS [FORMAT]
repo_img() {
    local kind=$1 fs=$2 fmt=${3:-raw} name
    name="repo-$kind-$fs"
    [[ $fmt == raw ]] || name+=".$fmt"
    _locked "$name" _repo_build_img "$kind" "$fs" "$fmt" || return 1
    printf '%s\n' "$(_cache)/$name"
}

# repo_motd_img TEXT IMAGE [BLOB_BYTES]: a 4 MiB ext4 IMAGE whose /etc/motd
# says TEXT, with BLOB_BYTES of random data in /etc/blob when given (so that
# two such images share little), built from $T/motd-TEXT.
repo_motd_img() {
    local tree=$T/motd-$1
    mkdir -p "$tree/etc"
    echo "$1" >"$tree/etc/motd"
    [[ -z ${3:-} ]] || head -c "$3" /dev/urandom >"$tree/etc/blob"
    mke2fs -q -F -t ext4 -d "$tree" "$2" 4M >/dev/null 2>&1 || fail "mke2fs -d $tree failed"
}

# ---- vmsync shortcuts -----------------------------------------------------------

repo_init() {
    vm_ok "$T/init-$(basename "$1")" init "$1"
}

# shellcheck disable=SC2034 # R, url and opts are for the caller
repo_for() {
    R=$T/srv/$1
    repo_init "$R"
    if [[ $1 == local ]]; then
        url=$R
        opts=()
    else
        url=$SSHD_URL_BASE/$1
        opts=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")
    fi
}

repo_digest() {
    local o
    o=$(timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" manifest "$1" --json -q 2>/dev/null | jq -r .digest) || true
    [[ $o =~ ^[0-9a-f]{64}$ ]] || { echo "no-digest-for-$1"; return 1; }
    echo "$o"
}

repo_stat() {
    jq -r --arg k "$2" '.[$k] // "missing"' "$1"
}

# repo_version_digest REPO NAME VERSION
repo_version_digest() {
    timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" log "$1" "$2" --json 2>/dev/null |
        jq -r --argjson v "$3" 'select(.version == $v) | .digest'
}

# repo_nversions REPO NAME
repo_nversions() {
    timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" log "$1" "$2" --json 2>/dev/null | grep -c '^{' || true
}

# repo_lease REPO: the lease on the repository's one image, as VERSION|HOST
# (empty when nobody holds it)
repo_lease() {
    sqlite3 "$1/catalog.db" "select l.version || '|' || l.host from leases l"
}

# repo_add_file IMAGE NAME: offline work in a repo_img image, as a user's VM
# would do it: a new file /NAME.txt in its ext4 partition (debugfs -w)
repo_add_file() {
    printf 'offline work: %s\n' "$2" >"$T/$2.txt"
    debugfs -w -R "write $T/$2.txt /$2.txt" "$1?offset=$REPO_PART_START" >/dev/null 2>&1 ||
        fail "debugfs could not write /$2.txt into $1"
}

# ---- loop devices, mounts, background jobs ------------------------------------

_REPO_MOUNTS=()
_REPO_PIDS=()

repo_have_loop() {
    [[ $(id -u) == 0 ]] && losetup -f >/dev/null 2>&1
}

# repo_loop IMAGE [ro] [PART_BYTES]: prints the loop device.  (It runs in a
# command substitution, so it cannot record the device: the exit trap finds
# every loop device whose backing file lies under the test's scratch dir.)
repo_loop() {
    local img=$1 ro=${2:-} pb=${3:-$REPO_PART_BYTES}
    local args=(-f --show -o "$REPO_PART_START" --sizelimit "$pb")
    [[ $ro == ro ]] && args+=(-r)
    losetup "${args[@]}" "$img"
}

repo_unloop() {
    local dev=$1 i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        losetup -d "$dev" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "# cannot detach $dev" >&2
    return 1
}

# _repo_our_loops: the loop devices backed by files under $T
_repo_our_loops() {
    losetup -l -n -O NAME,BACK-FILE 2>/dev/null | while read -r dev back; do
        [[ $back == "$T"/* ]] && echo "$dev"
    done
    return 0
}

# repo_mount DEV FS DIR [ro]
repo_mount() {
    local dev=$1 fs=$2 dir=$3 ro=${4:-}
    mkdir -p "$dir"
    if [[ $fs == ext4 ]]; then
        if [[ $ro == ro ]]; then mount -t ext4 -o ro,noload "$dev" "$dir"; else mount -t ext4 "$dev" "$dir"; fi
    else
        if [[ $ro == ro ]]; then ntfs-3g -o ro "$dev" "$dir"; else ntfs-3g "$dev" "$dir"; fi
    fi || return 1
    _REPO_MOUNTS+=("$dir")
}

repo_umount() {
    local dir=$1 i
    sync
    for i in 1 2 3 4 5 6 7 8 9 10; do
        umount "$dir" 2>/dev/null && break
        sleep 0.5
    done
    mountpoint -q "$dir" && umount -l "$dir" 2>/dev/null
    # ntfs-3g flushes after the unmount returns: wait until nothing holds the dir's device
    for i in $(seq 1 40); do
        pgrep -f "ntfs-3g .*$dir\$" >/dev/null 2>&1 || break
        sleep 0.25
    done
    local keep=() d
    for d in "${_REPO_MOUNTS[@]}"; do [[ $d == "$dir" ]] || keep+=("$d"); done
    _REPO_MOUNTS=("${keep[@]}")
}

repo_bg() {
    "$@" &
    REPO_BG_PID=$!
    _REPO_PIDS+=("$REPO_BG_PID")
}

_repo_rc() { return "$1"; }
_repo_cleanup() {
    local rc=$? i p
    set +e
    for p in "${_REPO_PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    for ((i = ${#_REPO_MOUNTS[@]} - 1; i >= 0; i--)); do
        repo_umount "${_REPO_MOUNTS[i]}" || true
    done
    # anything else still mounted below the scratch dir
    for p in $(findmnt -rn -o TARGET 2>/dev/null | grep -F "$T/" | sort -r); do
        repo_umount "$p" || true
    done
    for p in $(_repo_our_loops); do
        repo_unloop "$p" || true
    done
    _repo_rc "$rc"
    _common_cleanup
}
trap _repo_cleanup EXIT
# a plain SIGTERM (run.sh's timeout) or ^C would skip the EXIT trap
trap 'exit 143' TERM
trap 'exit 130' INT

# repo_fsck IMAGE FS [PART_BYTES]: 0 when the filesystem of the raw IMAGE is clean.
repo_fsck() {
    local img=$1 fs=$2 pb=${3:-$REPO_PART_BYTES} dev rc=0 out
    if [[ $fs == ext4 ]]; then
        out=$(e2fsck -fn "$img?offset=$REPO_PART_START" 2>&1) || rc=$?
    else
        local part="$T/fsck-part.$$"
        dd if="$img" of="$part" bs=1M iflag=skip_bytes,count_bytes skip="$REPO_PART_START" \
            count="$pb" conv=sparse status=none || return 1
        out=$(ntfsfix -n "$part" 2>&1) || rc=$?
        rm -f "$part"
    fi
    ((rc == 0)) || echo "$out" | tail -15
    return $rc
}

# repo_tree_map DIR OUT: {"/path": sha256 or "dir" or "link:TARGET"} of a tree as JSON
repo_tree_map() {
    python3 - "$1" "$2" <<'EOF'
import hashlib, json, os, sys
root, outp = sys.argv[1], sys.argv[2]
m = {}
for d, dirs, files in os.walk(root):
    rel = d[len(root):] or '/'
    for n in dirs + files:
        p = os.path.join(d, n)
        r = (rel.rstrip('/') + '/' + n)
        if r in ('/lost+found',) or r.startswith('/lost+found/'):
            continue
        if r in ('/System Volume Information',) or r.startswith('/System Volume Information/'):
            continue
        if os.path.islink(p):
            m[r] = 'link:' + os.readlink(p)
        elif os.path.isdir(p):
            m[r] = 'dir'
        else:
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''):
                    h.update(b)
            m[r] = h.hexdigest()
json.dump(m, open(outp, 'w'), sort_keys=True)
EOF
}

# repo_manifest_map MANIFEST_JSON OUT: the same map from a manifest's JSON (files
# with sha256, directories, symlinks; /lost+found left out)
repo_manifest_map() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
out = {}
for v in m.get('volumes', []):
    if v.get('fs') not in ('ext', 'ntfs'):
        continue
    for e in v.get('entries', []):
        p = e.get('path')
        if p == '/' or p == '/lost+found' or p.startswith('/lost+found/'):
            continue
        if p.startswith('/$') or p == '/System Volume Information' or p.startswith('/System Volume Information/'):
            continue
        t = e.get('type')
        if t == 'dir':
            out[p] = 'dir'
        elif t == 'symlink':
            out[p] = 'link:' + str(e.get('symlink')).replace('\\', '/')
        elif t == 'file':
            out[p] = e.get('sha256')
        else:
            out[p] = t
json.dump(out, open(sys.argv[2], 'w'), sort_keys=True)
EOF
}

# repo_cmp_maps A B LABEL: prints differences, returns 1 when the maps differ
repo_cmp_maps() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
label = sys.argv[3]
errs = []
for k in sorted(set(a) - set(b))[:8]:
    errs.append('only in first: %s' % k)
for k in sorted(set(b) - set(a))[:8]:
    errs.append('only in second: %s' % k)
diff = [k for k in sorted(set(a) & set(b)) if a[k] != b[k]]
for k in diff[:8]:
    errs.append('differs: %s (%s vs %s)' % (k, a[k][:16], b[k][:16]))
n = len(set(a) ^ set(b)) + len(diff)
if n:
    print('%s: %d differences: %s' % (label, n, '; '.join(errs)))
sys.exit(1 if n else 0)
EOF
}

# repo_wait_size FILE BYTES TIMEOUT_S PID: waits until FILE's allocated size
# (du) reaches BYTES, or PID exits; 0 when reached, 1 otherwise.
repo_wait_alloc() {
    local f=$1 want=$2 tmo=$3 pid=$4 t0=$SECONDS a
    while ((SECONDS - t0 < tmo)); do
        if [[ -e $f ]]; then
            a=$(($(stat -c %b "$f" 2>/dev/null || echo 0) * 512))
            ((a >= want)) && return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.02
    done
    return 1
}
