# shellcheck shell=bash
# The shared third-party corpus (../shared/corpus beside the repository).
#
#   corpus_extract DEST [MAX_BYTES]
#     decompresses every e2fsprogs/*.img.gz to DEST/e2fs-NAME.img and every
#     ntfs-corrupted/*.tar.xz's ntfs.img to DEST/ntfs-NAME.img (sparse), skipping
#     images whose size exceeds MAX_BYTES.  Prints how many it made.
#
# Needs CORPUS (set by common.sh; override with VMSYNC_CORPUS).

corpus_available() {
    [[ -d $CORPUS/e2fsprogs || -d $CORPUS/ntfs-corrupted ]]
}

corpus_extract() {
    local dest=$1 max=${2:-0} f n out tmp count=0
    mkdir -p "$dest"
    shopt -s nullglob
    for f in "$CORPUS"/e2fsprogs/*.img.gz; do
        n=$(basename "$f" .img.gz)
        out="$dest/e2fs-$n.img"
        gzip -dc "$f" >"$out"
        fallocate --dig-holes "$out" 2>/dev/null || true # keep zero runs as holes
        if ((max > 0 && $(stat -c %s "$out") > max)); then rm -f "$out"; else count=$((count + 1)); fi
    done
    for f in "$CORPUS"/ntfs-corrupted/*.tar.xz; do
        n=$(basename "$f" .tar.xz)
        tmp="$dest/.x-$n"
        mkdir -p "$tmp"
        if tar -xJf "$f" -C "$tmp" --no-same-owner ntfs.img 2>/dev/null ||
            tar -xJf "$f" -C "$tmp" --no-same-owner --wildcards '*ntfs.img' 2>/dev/null; then
            out=$(find "$tmp" -name ntfs.img -type f | head -1)
            if [[ -n $out ]] && ((max == 0 || $(stat -c %s "$out") <= max)); then
                mv "$out" "$dest/ntfs-$n.img"
                count=$((count + 1))
            fi
        else
            echo "corpus: cannot extract ntfs.img from $f" >&2
        fi
        rm -rf "$tmp"
    done
    shopt -u nullglob
    echo "$count"
}
