#!/usr/bin/env bash
# Names are data.  ext4 and NTFS images hold names with a newline (a directory
# "new\nD " whose file would forge the line "D /etc/shadow"), an escape
# sequence, a C1 control, a double quote and a backslash, and (ext4 only) bytes
# that are not UTF-8: two names that differ only in them, a symlink target and
# xattr names.  Checked: `vmsync diff` prints one line per change, those names
# quoted as git quotes them, and no control byte; `manifest --json` and
# `diff --json` keep every name lossless (NAME_bytes in hex); labels in the
# summaries and the catalog's host and message in `log` are quoted too; a
# damaged saved manifest (a flipped byte, a cut) prints nothing on stdout.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/mkimage.sh
source "$TESTS_LIB/mkimage.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex jq python3
export VMSYNC_CACHE=$T/cache

# Trees: base, and names (base changed: names added, one file changed, one
# moved to a name holding " -> ").  $T/expected-FS.json lists what the diff
# must report, every path as hex bytes.
python3 - "$T" <<'EOF'
import json, os, sys
t = sys.argv[1]
def tree(root, files, links=(), xattrs=()):
    for name, data in files:
        p = os.path.join(root.encode(), name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(data)
        os.utime(p, (1609459200, 1609459200))
    for name, target in links:
        os.symlink(target, os.path.join(root.encode(), name))
    for name, key in xattrs:
        os.setxattr(os.path.join(root.encode(), name), key, b'1')
base = [(b'keep.txt', b'same\n'), (b'chg\tme', b'old\n'), (b'mv\x1bsrc', b'moved content\n')]
odd = [(b'new\nD /etc/shadow', b'forged\n'), (b'esc\x1b[31mred', b'1'), (b'quo"te\\back', b'2'),
       (b'caf\xc3\xa9', b'3'), (b'c1\xc2\x9bx', b'4'), (b'chg\tme', b'new\n'),
       (b'mv dst -> x', b'moved content\n'), (b'keep.txt', b'same\n')]
not_utf8 = [(b'bad\xff\xfe', b'5'), (b'twin\xff', b'6'), (b'twin\xfe', b'7'), (b'xattrs', b'8')]
for fs in ('ext4', 'ntfs'):
    tree('%s/base-%s' % (t, fs), base)
    extra = not_utf8 if fs == 'ext4' else []
    if fs == 'ext4':
        tree('%s/names-%s' % (t, fs), odd + extra, links=[(b'link\x01', b'tgt\xff\nx')],
             xattrs=[(b'xattrs', b'user.bad\xff'), (b'xattrs', b'user.bad\xfe')])
    else:
        tree('%s/names-%s' % (t, fs), odd)
    added = [b'/' + n for n, _ in odd + extra if n not in (b'chg\tme', b'mv dst -> x', b'keep.txt')]
    added += [b'/new\nD ', b'/new\nD /etc'] + ([b'/link\x01'] if fs == 'ext4' else [])
    exp = {'added': sorted(p.hex() for p in added), 'removed': [],
           'changed': [b'/chg\tme'.hex()], 'moved': [[b'/mv\x1bsrc'.hex(), b'/mv dst -> x'.hex()]]}
    json.dump(exp, open('%s/expected-%s.json' % (t, fs), 'w'))
EOF
[[ -d $T/names-ext4 ]] || fail "cannot make the trees"

LABEL=$'lab\e[2J"'
for fs in ext4 ntfs; do
    for which in base names; do
        if [[ $fs == ext4 ]]; then
            mkimg_ext4 "$T/$which-$fs.img" 0 $((16 << 20)) "$T/$which-$fs" -N 1024 -L "$LABEL" ||
                fail "mke2fs of $which-$fs failed"
        else
            mkimg_ntfs_part "$T/$which-$fs.img" $((16 << 20)) "$T/$which-$fs" 0 ||
                fail "mkntfs of $which-$fs failed"
        fi
    done
done

# check_diff FS TEXT JSON: the text has one line per change of the JSON, each
# line parses (quoted names unquoted) to what the JSON and the expected list
# hold, and no control byte reaches the output.
check_diff() {
    python3 - "$T/expected-$1.json" "$2" "$3" "$1" <<'EOF'
import json, re, sys
import vmtest as V
exp, text, d, fs = json.load(open(sys.argv[1])), open(sys.argv[2], 'rb').read(), V.load(sys.argv[3]), sys.argv[4]
errs = []
def raw(item, key):
    return bytes.fromhex(item[key + '_bytes']) if key + '_bytes' in item else item[key].encode()
def unquote(s):
    """A git-quoted name at the start of S: (bytes, rest)."""
    out, i = bytearray(), 1
    esc = {'a': 7, 'b': 8, 't': 9, 'n': 10, 'v': 11, 'f': 12, 'r': 13, '"': 34, '\\': 92}
    while s[i] != '"':
        if s[i] == '\\':
            if s[i + 1] in esc:
                out.append(esc[s[i + 1]]); i += 2
            else:
                out.append(int(s[i + 1:i + 4], 8)); i += 4
        else:
            c = s[i].encode('utf-8', 'surrogateescape'); out += c; i += 1
    return bytes(out), s[i + 1:]
def name(s, sep):
    if s.startswith('"'):
        return unquote(s)
    n, _, rest = s.rpartition(sep) if sep == ' (' else s.partition(sep) if sep else (s, '', '')
    if sep and not n:
        n, rest = rest, ''
    return n.encode('utf-8', 'surrogateescape'), (sep + rest if sep and rest else '')
def parse_line(k, rest):
    """Records the change of one line; returns what follows its names."""
    if k == 'R':
        a, rest = name(rest, ' -> ')
        if not rest.startswith(' -> '):
            raise ValueError('no " -> "')
        b, rest = name(rest[4:], None)
        got['moved'].append([a.hex(), b.hex()])
    else:
        p, rest = name(rest, ' (' if k == 'M' else None)
        got[{'A': 'added', 'D': 'removed', 'M': 'changed'}[k]].append(p.hex())
    return rest
bad = sorted({c for c in text if (c < 0x20 and c != 10) or c == 0x7f})
if bad or b'\xc2\x9b' in text:
    errs.append('control bytes in the text output: %s' % (bad or 'C1 CSI'))
got = {'added': [], 'removed': [], 'changed': [], 'moved': []}
lines = text.decode('utf-8', 'surrogateescape').split('\n')
if lines[-1] != '':
    errs.append('the text output does not end with a newline')
for l in lines[:-1]:
    m = re.match(r'([ADMR]) (.*)$', l)
    if not m:
        errs.append('not a diff line: %r' % l); continue
    k, rest = m.groups()
    try:
        rest = parse_line(k, rest)
    except (IndexError, ValueError) as e:
        errs.append('cannot parse %r: %s' % (l, e)); continue
    if rest and not (k == 'M' and re.fullmatch(r' \([a-z,]+\)', rest)):
        errs.append('trailing %r in %r' % (rest, l))
js = {'added': [raw(i, 'path').hex() for i in d['added']],
      'removed': [raw(i, 'path').hex() for i in d['removed']],
      'changed': [raw(i, 'path').hex() for i in d['changed']],
      'moved': [[raw(i, 'from').hex(), raw(i, 'to').hex()] for i in d['moved']]}
for k in got:
    s = lambda l: sorted(map(json.dumps, l))
    if s(got[k]) != s(exp[k]):
        errs.append('text %s: %s, expected %s' % (k, got[k], exp[k]))
    if s(js[k]) != s(exp[k]):
        errs.append('JSON %s: %s, expected %s' % (k, js[k], exp[k]))
# the documented form, exactly
for want in ['A "/esc\\033[31mred"', 'A "/quo\\"te\\\\back"', 'A /caf\u00e9', 'A "/c1\\302\\233x"',
             'A "/new\\nD /etc/shadow"', 'M "/chg\\tme" (content)', 'R "/mv\\033src" -> "/mv dst -> x"'] + \
            (['A "/twin\\377"', 'A "/bad\\377\\376"', 'A "/link\\001"'] if fs == 'ext4' else []):
    if want not in lines:
        errs.append('no line %r' % want)
sys.exit(V.report(errs, fs + ' diff: '))
EOF
}

for fs in ext4 ntfs; do
    vm_ok "$T/$fs-diff" diff "$T/base-$fs.img" "$T/names-$fs.img"
    vm_ok "$T/$fs-diffj" diff "$T/base-$fs.img" "$T/names-$fs.img" --json
    check_diff "$fs" "$T/$fs-diff.out" "$T/$fs-diffj.out" || FAILS=$((FAILS + 1))
done

# Every name of the manifest round-trips to its bytes on disk; NAME_bytes
# appears only where the name is not UTF-8.
manifest_json "$T/mj" "$T/names-ext4.img"
python3 - "$T/mj.out" "$T/names-ext4" <<'EOF' || bad "manifest --json does not keep the names"
import os, sys
import vmtest as V
m, root = V.load(sys.argv[1]), sys.argv[2].encode()
errs = []
def raw(o, key):
    v = o.get(key)
    b = o.get(key + '_bytes')
    try:
        v.encode('utf-8')
        valid = b'\xef\xbf\xbd' not in v.encode()
    except UnicodeEncodeError:
        valid = False
    if (b is None) != valid:
        errs.append('%s %r: %s_bytes %r' % (key, v, key, b))
    return bytes.fromhex(b) if b is not None else v.encode()
entries = [e for v in m['volumes'] for e in v['entries']]
paths = {raw(e, 'path') for e in entries}
on_disk = set()
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        on_disk.add(os.path.join(d, n)[len(root):])
if on_disk - paths:
    errs.append('names missing from the manifest: %s' % sorted(on_disk - paths))
twins = [e for e in entries if e['path'] == '/twin\ufffd']
if len({e.get('path_bytes') for e in twins}) != 2:
    errs.append('the two twin names are not two: %s' % twins)
link = [e for e in entries if e['path'] == '/link\u0001']
if not link or raw(link[0], 'symlink') != os.readlink(root + b'/link\x01'):
    errs.append('symlink target: %s' % link)
x = [e for e in entries if e['path'] == '/xattrs']
names = {raw(a, 'name') for a in (x[0].get('xattrs') or [])} if x else set()
if not {b'user.bad\xff', b'user.bad\xfe'} <= names:
    errs.append('xattr names: %s' % names)
sys.exit(V.report(errs, 'manifest --json: '))
EOF

# Labels in the summaries: quoted, no escape byte.
vm_ok "$T/mf" manifest "$T/names-ext4.img" -o "$T/names.vmsm"
vm_ok "$T/show" manifest show "$T/names.vmsm"
vm_ok "$T/insp" inspect "$T/names-ext4.img"
for f in show insp; do
    grep -qF 'label "lab\033[2J\""' "$T/$f.out" || bad "$f: the label is not quoted: $(grep label "$T/$f.out")"
    if LC_ALL=C grep -q $'\e' "$T/$f.out"; then bad "$f: an escape byte reaches the output"; fi
done
vm_ok "$T/inspj" inspect "$T/names-ext4.img" --json
[[ $(jq -r '.volumes[0].label' "$T/inspj.out") == "$LABEL" ]] || bad "inspect --json: the label is not $LABEL"

# The catalog's words: a host and a message with control characters.
R=$T/repo
vm_ok "$T/init" init "$R"
vm_ok "$T/imp" import "$R" "$T/base-ext4.img" --name names -q --host $'evil\nhost' \
    -m $'first line\nD /etc/shadow\e[2J'
vm_ok "$T/log" log "$R"
want=$(printf '%s\n' '    first line\nD /etc/shadow\033[2J')
[[ $(sed -n 2p "$T/log.out") == "$want" && $(wc -l <"$T/log.out") == 2 ]] ||
    bad "log: the message is not one escaped line: $(head -c 300 "$T/log.out" | od -c | head -5)"
grep -qF '@"evil\nhost"  parent 0' "$T/log.out" || bad "log: the host is not quoted: $(head -1 "$T/log.out")"
vm_ok "$T/logj" log "$R" --json
[[ $(jq -r .host "$T/logj.out") == $'evil\nhost' ]] || bad "log --json: the host does not round-trip"

# A damaged manifest prints nothing on stdout: a byte flipped in the middle of
# the compressed body, and the file cut there.  The manifest must span several
# zstd blocks for a streaming printer to have printed something already.
mkdir -p "$T/many"
python3 -c "
import os, sys
for i in range(3000):
    open('%s/f%05d' % (sys.argv[1], i), 'w').write('file %d\n' % i)" "$T/many"
mkimg_ext4 "$T/many.img" 0 $((32 << 20)) "$T/many" -N 4096 || fail "mke2fs of many failed"
vm_ok "$T/mm" manifest "$T/many.img" -o "$T/many.vmsm"
vm_ok "$T/mmshow" manifest show "$T/many.vmsm" --json
json_ok "$T/mmshow.out" || bad "manifest show --json of a sound manifest is not JSON"
size=$(stat -c %s "$T/many.vmsm")
((size > 100000)) || bad "the manifest is too small ($size bytes) to test partial output"
cp "$T/many.vmsm" "$T/flipped.vmsm"
python3 -c "
import sys
f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
f.write(bytes([b[0] ^ 0x20]))" "$T/flipped.vmsm" $((size / 2))
head -c $((size / 2)) "$T/many.vmsm" >"$T/cut.vmsm"
for damaged in flipped cut; do
    for mode in --json ""; do
        # shellcheck disable=SC2086
        vm "$T/$damaged-show" manifest show "$T/$damaged.vmsm" $mode
        ((VM_RC == 5)) || bad "manifest show $damaged $mode exited $VM_RC, expected 5"
        [[ ! -s $T/$damaged-show.out ]] ||
            bad "manifest show $damaged $mode printed $(stat -c %s "$T/$damaged-show.out") bytes before failing"
        why=$(one_error_line "$T/$damaged-show" "$damaged.vmsm") || bad "manifest show $damaged $mode: $why"
    done
done
finish
