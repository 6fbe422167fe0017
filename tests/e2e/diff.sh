#!/usr/bin/env bash
# vmsync diff between images made from tree A and tree B (mktree_diff_b): exactly
# the known added / removed / changed / moved sets, as JSON and as text; the
# same from saved manifests and from a mix of image and manifest; nothing for
# an image against itself.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex

# The expected result (see mktree_diff_b in tests/lib/mktree.sh).  A renamed
# directory whose files moved with it is itself a move (README, "vmsync diff"):
# dir5 (which holds only dir6) and dir6 (which holds bottom.bin).
cat >"$T/expected.json" <<'EOF'
{
  "added": ["/added-1.txt", "/dir1/added-2.txt", "/newdir", "/newdir/added-3.txt"],
  "removed": ["/blocks/one-byte", "/names/.hidden"],
  "changed": {"/dir1/top.txt": ["content"], "/dir1/dir2/mid.txt": ["content", "size"]},
  "moved": [["/blocks/size4095.bin", "/dir1/dir2/size4095.bin"],
            ["/big/medium-1536k.bin", "/blocks/medium-1536k.bin"],
            ["/dir1/dir2/dir3/dir4/dir5", "/dir1/dir2/dir3/dir4/dir5-renamed"],
            ["/dir1/dir2/dir3/dir4/dir5/dir6", "/dir1/dir2/dir3/dir4/dir5-renamed/dir6"],
            ["/dir1/dir2/dir3/dir4/dir5/dir6/bottom.bin",
             "/dir1/dir2/dir3/dir4/dir5-renamed/dir6/bottom.bin"]]
}
EOF

# check_diff JSON_FILE TEXT_FILE|- LABEL
check_diff() {
    python3 - "$T/expected.json" "$1" "$2" "$3" <<'EOF'
import json, sys
import vmtest as V
exp = V.load(sys.argv[1])
label = sys.argv[4]
errs = []
try:
    d = V.load(sys.argv[2])
except Exception as e:  # noqa
    print('FAIL: %s: diff output is not JSON: %s' % (label, e))
    sys.exit(1)
for k in ('added', 'removed', 'changed', 'moved'):
    if not isinstance(d.get(k), list):
        errs.append('key %r missing or not a list' % k)
        d[k] = []
def vols(items):
    return {i.get('volume') for i in items} - {1}
for k in ('added', 'removed', 'changed', 'moved'):
    v = vols(d[k])
    if v:
        errs.append('%s items with volume other than 1: %s' % (k, V.show(map(str, v))))
def cmpset(what, got, want):
    got_l = list(got)
    if len(set(got_l)) != len(got_l):
        errs.append('%s has duplicates' % what)
    got, want = set(got_l), set(want)
    if got - want:
        errs.append('%s: unexpected %s' % (what, V.show(got - want)))
    if want - got:
        errs.append('%s: missing %s' % (what, V.show(want - got)))
cmpset('added', (i.get('path') for i in d['added']), exp['added'])
cmpset('removed', (i.get('path') for i in d['removed']), exp['removed'])
cmpset('changed', (i.get('path') for i in d['changed']), exp['changed'])
cmpset('moved', ((i.get('from'), i.get('to')) for i in d['moved']), map(tuple, exp['moved']))
for i in d['changed']:
    w = exp['changed'].get(i.get('path'))
    if w is not None and sorted(i.get('what') or []) != sorted(w):
        errs.append('changed %s: what=%r, expected %r' % (i.get('path'), i.get('what'), w))
if sys.argv[3] != '-':
    # "A /p", "D /p", "R /a -> /b", "M /p" optionally followed by " (what,...)"
    lines = []
    for l in open(sys.argv[3], encoding='utf-8').read().splitlines():
        if not l.strip():
            continue
        if l.startswith('M ') and l.endswith(')') and ' (' in l:
            p, _, what = l[2:-1].rpartition(' (')
            w = exp['changed'].get(p)
            if w is not None and sorted(what.split(',')) != sorted(w):
                errs.append('text line %r: expected (%s)' % (l, ','.join(w)))
            l = 'M ' + p
        lines.append(l)
    want = {'A ' + p for p in exp['added']} | {'D ' + p for p in exp['removed']} | \
           {'M ' + p for p in exp['changed']} | {'R %s -> %s' % (a, b) for a, b in exp['moved']}
    cmpset('text output lines', lines, want)
sys.exit(V.report(errs, label + ': '))
EOF
}

for fs in ext4 ntfs; do
    a=$(img "diffa-$fs") || fail "cannot build diffa-$fs"
    b=$(img "diffb-$fs") || fail "cannot build diffb-$fs"
    # images
    vm "$T/$fs.json" diff "$a" "$b" --json
    if ((VM_RC != 0)); then
        bad "$fs: vmsync diff --json exited $VM_RC: $(head -c 300 "$T/$fs.json.err" | tr '\n' ' ')"
        continue
    fi
    vm "$T/$fs.text" diff "$a" "$b"
    ((VM_RC == 0)) || bad "$fs: vmsync diff (text) exited $VM_RC: $(head -c 300 "$T/$fs.text.err" | tr '\n' ' ')"
    check_diff "$T/$fs.json.out" "$T/$fs.text.out" "$fs images" || FAILS=$((FAILS + 1))

    # saved manifests, and a mix
    vm_ok "$T/$fs.sa" manifest "$a" -o "$T/$fs-a.vmm"
    vm_ok "$T/$fs.sb" manifest "$b" -o "$T/$fs-b.vmm"
    vm "$T/$fs.mjson" diff "$T/$fs-a.vmm" "$T/$fs-b.vmm" --json
    if ((VM_RC != 0)); then
        bad "$fs: diff of manifests exited $VM_RC: $(head -c 300 "$T/$fs.mjson.err" | tr '\n' ' ')"
    else
        check_diff "$T/$fs.mjson.out" - "$fs manifests" || FAILS=$((FAILS + 1))
        norm='def s: sort_by(tojson); {added: (.added|s), removed: (.removed|s), moved: (.moved|s), changed: (.changed|map(.what |= sort)|s)}'
        if ! cmp -s <(jq -S "$norm" "$T/$fs.json.out") <(jq -S "$norm" "$T/$fs.mjson.out"); then
            bad "$fs: diff of manifests differs from diff of images"
        fi
    fi
    vm "$T/$fs.mix" diff "$a" "$T/$fs-b.vmm" --json
    if ((VM_RC != 0)); then
        bad "$fs: diff image vs manifest exited $VM_RC: $(head -c 300 "$T/$fs.mix.err" | tr '\n' ' ')"
    else
        check_diff "$T/$fs.mix.out" - "$fs image vs manifest" || FAILS=$((FAILS + 1))
    fi

    # reverse direction: added <-> removed, moves reversed
    vm "$T/$fs.rev" diff "$T/$fs-b.vmm" "$T/$fs-a.vmm" --json
    if ((VM_RC != 0)); then
        bad "$fs: reverse diff exited $VM_RC"
    else
        python3 - "$T/$fs.json.out" "$T/$fs.rev.out" <<'EOF' || bad "$fs: reverse diff is not the mirror image of the forward diff"
import sys
import vmtest as V
f, r = V.load(sys.argv[1]), V.load(sys.argv[2])
P = lambda l: sorted(i['path'] for i in l)
ok = P(f['added']) == P(r['removed']) and P(f['removed']) == P(r['added']) and \
     P(f['changed']) == P(r['changed']) and \
     sorted((i['from'], i['to']) for i in f['moved']) == sorted((i['to'], i['from']) for i in r['moved'])
sys.exit(0 if ok else 1)
EOF
    fi

    # an image against itself: nothing
    vm "$T/$fs.same" diff "$a" "$a" --json
    if ((VM_RC != 0)); then
        bad "$fs: diff A A exited $VM_RC"
    elif [[ $(jq '[.added, .removed, .changed, .moved] | map(length) | add' "$T/$fs.same.out") != 0 ]]; then
        bad "$fs: diff A A is not empty: $(jq -c . "$T/$fs.same.out" | head -c 300)"
    fi
    vm "$T/$fs.sametxt" diff "$a" "$a"
    [[ $VM_RC == 0 && ! -s $T/$fs.sametxt.out ]] || bad "$fs: text diff A A: status $VM_RC, output $(head -c 100 "$T/$fs.sametxt.out")"
done
finish
