# shellcheck shell=bash
# Helpers shared by bench/run.sh and bench/sync.sh: a cache of built trees and
# images keyed by their recipe, mount-safe removal, and the Debian mirror.
# The caller defines msg, die, CACHE and STEP before calling them.

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
