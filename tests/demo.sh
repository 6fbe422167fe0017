#!/usr/bin/env bash
# make demo: builds two versions of a small desktop-like disk image (ext4 in a
# GPT disk, as qcow2) and shows what vmsync sees in them and what changed.
set -euo pipefail
BUILD=${1:-build}
VMSYNC=$BUILD/vmsync
DEMO=$BUILD/demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

make_tree() {
    local dir=$1
    mkdir -p "$dir"/{etc,home/user/Documents,home/user/Mail,usr/share/doc}
    echo "PRETTY_NAME=\"Demo Desktop\"" > "$dir/etc/os-release"
    echo "12.0" > "$dir/etc/debian_version"
    echo "127.0.0.1 localhost" > "$dir/etc/hosts"
    for i in $(seq 1 40); do
        head -c $((i * 997)) /dev/zero | tr '\0' "$((i % 10))" > "$dir/usr/share/doc/readme-$i.txt"
    done
    openssl rand $((8 << 20)) > "$dir/home/user/Mail/inbox.mbox"
    echo "quarterly numbers" > "$dir/home/user/Documents/report.txt"
    ln -s Documents/report.txt "$dir/home/user/latest"
}

make_disk() {
    local tree=$1 out=$2 raw=$DEMO/tmp.img
    truncate -s 128M "$raw"
    printf 'label: gpt\nstart=2048, type=L\n' | sfdisk -q "$raw"
    mke2fs -q -F -t ext4 -d "$tree" -E offset=1048576 "$raw" 120M
    qemu-img convert -O qcow2 "$raw" "$out"
    rm -f "$raw"
}

say "building two versions of a demo image in $DEMO"
make_tree "$DEMO/v1"
cp -a "$DEMO/v1" "$DEMO/v2"
echo "new plan" > "$DEMO/v2/home/user/Documents/plan.txt"
mkdir "$DEMO/v2/home/user/Documents/archive"
mv "$DEMO/v2/home/user/Documents/report.txt" "$DEMO/v2/home/user/Documents/archive/"
echo "10.0.0.1 fileserver" >> "$DEMO/v2/etc/hosts"
rm "$DEMO/v2/usr/share/doc/readme-7.txt"
dd if=/dev/urandom of="$DEMO/v2/home/user/Mail/inbox.mbox" bs=4096 seek=100 count=3 conv=notrunc status=none
make_disk "$DEMO/v1" "$DEMO/desktop-v1.qcow2"
make_disk "$DEMO/v2" "$DEMO/desktop-v2.qcow2"

say "vmsync inspect desktop-v1.qcow2"
"$VMSYNC" inspect "$DEMO/desktop-v1.qcow2"

say "vmsync manifest desktop-v1.qcow2 -o desktop-v1.vmsm"
"$VMSYNC" manifest "$DEMO/desktop-v1.qcow2" -o "$DEMO/desktop-v1.vmsm"
"$VMSYNC" manifest show "$DEMO/desktop-v1.vmsm"
printf 'manifest: %s bytes for a %s-byte disk\n' "$(stat -c %s "$DEMO/desktop-v1.vmsm")" \
    "$(qemu-img info --output=json "$DEMO/desktop-v1.qcow2" | jq '."virtual-size"')"

say "the mailbox in the manifest (JSON)"
"$VMSYNC" manifest show "$DEMO/desktop-v1.vmsm" --json \
    | jq -c '.volumes[].entries[] | select(.path=="/home/user/Mail/inbox.mbox") | {path, size, sha256, chunks: .streams[0].chunks}'

say "vmsync diff desktop-v1.vmsm desktop-v2.qcow2"
"$VMSYNC" diff "$DEMO/desktop-v1.vmsm" "$DEMO/desktop-v2.qcow2"
