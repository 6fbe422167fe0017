#!/usr/bin/env bash
# make demo: the main job on an embedded default, a local repository.
#   1. build a "golden" desktop image (ext4 in a GPT disk, qcow2) and an older
#      image the laptop already holds (the seed);
#   2. import the golden image into a new repository;
#   3. check it out on the "laptop" against the seed: most bytes come from it;
#   4. work offline: change files inside the checked-out copy (with debugfs, so
#      no mount is needed);
#   5. check the copy back in: only what changed travels;
#   6. show the log and what changed between the versions.
set -euo pipefail
BUILD=${1:-build}
VMSYNC=$(cd "$BUILD" && pwd)/vmsync
DEMO=$BUILD/demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
cd "$DEMO"
export VMSYNC_CACHE=$PWD/laptop-cache VMSYNC_HOST=laptop-42
PART_OFFSET=1048576
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$'; printf ' %q' "${@/#$VMSYNC/vmsync}"; printf '\n'; "$@"; }

make_tree() {
    local dir=$1 release=$2
    mkdir -p "$dir"/{etc,home/user/Documents,home/user/Mail,usr/share/doc,usr/lib/office}
    echo "PRETTY_NAME=\"Demo Desktop $release\"" > "$dir/etc/os-release"
    echo "12.$release" > "$dir/etc/debian_version"
    echo "127.0.0.1 localhost" > "$dir/etc/hosts"
    for i in $(seq 1 200); do
        head -c $((i * 517)) /dev/zero | tr '\0' "$((i % 10))" > "$dir/usr/share/doc/readme-$i.txt"
    done
    # The office suite is new in release 2: the laptop's seed lacks it.
    if [[ $release -ge 2 ]]; then
        openssl rand -out "$dir/usr/lib/office/libcore.so" $((6 << 20))
        openssl rand -out "$dir/usr/lib/office/libui.so" $((2 << 20))
    fi
    openssl rand -out "$dir/usr/lib/libc.so.6" $((3 << 20))
    seq 1 400000 | sed 's/^/Subject: message /' > "$dir/home/user/Mail/inbox.mbox"
    echo "quarterly numbers" > "$dir/home/user/Documents/report.txt"
    ln -s Documents/report.txt "$dir/home/user/latest"
}

make_disk() {
    local tree=$1 out=$2 raw=tmp.img
    truncate -s 256M "$raw"
    printf 'label: gpt\nstart=2048, type=L\n' | sfdisk -q "$raw"
    mke2fs -q -F -t ext4 -d "$tree" -E offset=$PART_OFFSET "$raw" 250M
    qemu-img convert -O qcow2 "$raw" "$out"
    rm -f "$raw"
}

say "1. a golden image (release 2) and the laptop's older image (release 1, the seed)"
make_tree golden-tree 2
make_tree laptop-tree 1
make_disk golden-tree golden.qcow2
make_disk laptop-tree laptop-old.qcow2
rm -rf golden-tree laptop-tree
run "$VMSYNC" inspect golden.qcow2

say "2. the server: a repository with the golden image"
run "$VMSYNC" init repo
run "$VMSYNC" import repo golden.qcow2 --name desktop -m "golden image, release 2"

say "3. the laptop checks it out, reusing what its old image already holds"
run "$VMSYNC" checkout repo desktop --seed laptop-old.qcow2 -o desktop.img --estimate --rate 2M
run "$VMSYNC" checkout repo desktop --seed laptop-old.qcow2 -o desktop.img --stats-json checkout.json
jq -c '{bytes_from_seeds, bytes_fetched_compressed, objects_fetched, seconds}' checkout.json
run "$VMSYNC" images repo

say "4. offline work inside the copy"
printf 'Meeting notes\n' > notes.txt
debugfs -w "desktop.img?offset=$PART_OFFSET" -f - >/dev/null 2>&1 <<CMDS
write notes.txt /home/user/Documents/notes.txt
rm /home/user/Documents/report.txt
rm /usr/share/doc/readme-7.txt
CMDS
echo "  added /home/user/Documents/notes.txt, removed report.txt and readme-7.txt"

say "5. check-in sends only what changed"
run "$VMSYNC" checkin repo desktop desktop.img -m "offline work" --stats-json checkin.json
jq -c '{version, files_rehashed, files_trusted, bytes_sent_compressed, objects_sent, seconds}' checkin.json

say "6. the history and what changed"
run "$VMSYNC" log repo desktop
run "$VMSYNC" diff repo desktop@1 desktop@2
run "$VMSYNC" verify repo desktop@2 desktop.img
run "$VMSYNC" audit repo desktop
