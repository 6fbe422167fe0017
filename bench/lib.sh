# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/sync.sh: a cache of built trees and
# images keyed by their recipe, mount-safe removal, and the Debian mirror.
# The caller defines msg, die, CACHE and STEP before calling them.

# The run id each JSON records, so that bench/summary.py never mixes figures of
# two runs: make bench sets one for all its steps; a script run alone makes its
# own.
export BENCH_RUN_ID=${BENCH_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}

need() {
    local c missing=()
    for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (run packaging/install-deps.sh)"
}

# Unmounts anything still mounted below DIR (only debootstrap mounts there).
unmount_below() {
    local dir m
    dir=$(realpath -m "$1")
    # /proc/mounts escapes spaces as \040; our paths have none.
    while read -r m; do
        msg "unmounting leftover $m"
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

# remove_tree DIR: rm -rf that never crosses into a mount.
remove_tree() {
    [[ -e $1 ]] || return 0
    unmount_below "$1"
    rm -rf --one-file-system "$1"
}

# cached NAME KEY FUNC [ARGS]: runs FUNC NAME.tmp ARGS unless $CACHE/NAME was built with KEY,
# then renames NAME.tmp to NAME.  Prints nothing; FUNC's progress goes to stderr.
cached() {
    local name=$1 key=$2 fn=$3
    shift 3
    local out=$CACHE/$name
    if [[ -e $out && -f $CACHE/$name.key && $(<"$CACHE/$name.key") == "$key" ]]; then
        return 0
    fi
    remove_tree "$out.tmp"
    rm -f "$CACHE/$name.key"
    # Called plainly (not in an || list) so that set -e stays in force inside.
    STEP="building $name"
    "$fn" "$out.tmp" "$@"
    STEP=
    remove_tree "$out"
    mv "$out.tmp" "$out"
    printf '%s' "$key" >"$CACHE/$name.key"
}

detect_mirror() {
    if [[ -n ${BENCH_MIRROR:-} ]]; then
        printf '%s\n' "$BENCH_MIRROR"
        return
    fi
    local m
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | awk '
        /^[ \t]*#/ { next }
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }
        $1 == "URIs:" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) print $i }' |
        grep -v -e security -e updates | head -n 1 || true)
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

keyof() { cat "$CACHE/$1.key"; }

# ntfs_partition IMG TREE PART_BYTES SCRATCH: puts TREE on NTFS (mkntfs, then
# wimlib capture and apply) into the partition at PART_START of the disk IMG,
# which already holds its partition table.  Logs go to SCRATCH/wim.log.
ntfs_partition() {
    local img=$1 tree=$2 bytes=$3 scratch=$4
    local part=$scratch/ntfs-part.img wim=$scratch/tree.wim conf=$scratch/wimcapture.ini
    rm -f "$part"
    truncate -s "$bytes" "$part"
    mkntfs -q -Q -F -s 512 -c 4096 -p "$PART_START" -H 255 -S 63 -L bench "$part" >"$scratch/mkntfs.log" 2>&1 ||
        { cat "$scratch/mkntfs.log" >&2; return 1; }
    # wimlib cannot store device nodes, fifos or sockets: exclude /dev, /proc,
    # /sys and any special file elsewhere.
    {
        printf '[ExclusionList]\n/dev/*\n/proc/*\n/sys/*\n'
        (cd "$tree" && find . -path ./dev -prune -o -path ./proc -prune -o -path ./sys -prune -o \
            \( -type b -o -type c -o -type p -o -type s \) -print) | sed 's|^\.||'
    } >"$conf"
    wimlib-imagex capture "$tree" "$wim" --config="$conf" --no-acls --compress=none \
        >"$scratch/wim.log" 2>&1 || { tail -n 20 "$scratch/wim.log" >&2; return 1; }
    wimlib-imagex apply "$wim" 1 "$part" >>"$scratch/wim.log" 2>&1 ||
        { tail -n 20 "$scratch/wim.log" >&2; return 1; }
    rm -f "$wim"
    dd if="$part" of="$img" bs=1M conv=notrunc,sparse oflag=seek_bytes seek=$((PART_START * SECTOR)) status=none
    rm -f "$part"
}
