#!/bin/sh
# t-manifest-fill: the daemon checks every fetched block against the
# template's block manifest (imgcache-manifest beside it).  A source that
# serves wrong bytes under the right ETag is caught and the bytes come from
# the other one (both wrong: EIO, never a wrong byte); a stale manifest
# costs EIO on the changed blocks, never a wrong byte; a corrupted one is
# refused with a warning and the template served without it; the failures
# make a few event rows in the index (one per source and 2 s interval with
# their count), which imgcache-report sums per source; zero blocks
# are never fetched; a new generation, and another template with common
# blocks at other offsets, copy those blocks from the cache instead of
# fetching them (origin bytes counted from the servers' logs); a reader
# waiting for a block that another thread copies locally is woken when
# it lands, not at its deadline.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http

MANIFEST=$top_builddir/tools/imgcache-manifest
[ -x "$MANIFEST" ] || fail "$MANIFEST is not built (run make)"
BS=65536

# range_bytes LOG: body bytes of the ranged GETs of LOG, manifests aside.
range_bytes() {
	awk '$1 == "GET" && $3 != "-" && $2 !~ /imgcache-manifest/ { s += $5 }
	     END { printf "%d\n", s }' "$1"
}

# wait_hashed NAME N: until the index lists N blocks of template NAME's
# current generation with their hashes (the writer commits about once a
# second; a delta fill finds only committed blocks).
wait_hashed() {
	command -v sqlite3 >/dev/null || skip "sqlite3 not installed"
	wait_for 20 sh -c "[ \$(sqlite3 '$CACHE/index.db' \"SELECT count(*)
		FROM blocks b JOIN templates t ON b.tid = t.id AND
		b.gen = t.generation WHERE t.name = '$1' AND
		b.sha IS NOT NULL\") -ge $2 ]" ||
		fail "the index never listed $2 hashed blocks of $1"
}

# --- a source serving wrong bytes under the right ETag
SIZE=$((4 * 1048576))
make_file_bytes "$T/t.img" "$SIZE"
"$MANIFEST" -o "$T/t.img.imgcache-manifest" "$T/t.img" ||
	fail "imgcache-manifest failed"
start_faultsrv bad "$T/t.img" --manifest "$T/t.img.imgcache-manifest"
BAD=$URL
start_faultsrv good "$T/t.img" --manifest "$T/t.img.imgcache-manifest"
GOOD=$URL
start_faultsrv bad2 "$T/t.img"
BAD2=$URL

# both.img's manifest is of other bytes of the same size: no block of
# t.img (verified and indexed once read) can stand in for one of its
# blocks by a local copy, so both of its sources are judged.
make_file_bytes "$T/other.img" "$SIZE"
"$MANIFEST" -o "$T/other.imgcache-manifest" "$T/other.img" ||
	fail "imgcache-manifest failed"
cmp -s "$T/other.img" "$T/t.img" && fail "make_file_bytes made the same bytes"

CACHE=$T/cache
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template t.img]
origin = $BAD/corrupt/t.img
mirror = $GOOD/ok/t.img

[template both.img]
origin = $BAD/corrupt/t.img
mirror = $BAD2/corrupt/t.img
manifest = $T/other.imgcache-manifest
EOF
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"

if bounded cmp "$MNT/t.img" "$T/t.img"; then
	ok "bytes from a corrupting origin equal the template's"
else
	not_ok "wrong bytes served from a corrupting origin"
fi
assert_le "the corrupting origin was asked for blocks" "$SIZE" \
	"$(range_bytes "$T/bad.log")"
assert_le "the mirror served the blocks again" "$SIZE" \
	"$(range_bytes "$T/good.log")"
if grep -q "from $BAD/corrupt/t.img does not match the manifest" \
	"$IMGCACHE_LOG"; then
	ok "the log names the source that served wrong bytes"
else
	show_log "$IMGCACHE_LOG"
	not_ok "no log line names the corrupting source"
fi
fails=$(getfattr --only-values -n user.imgcache.verify_failures_by_source \
	"$MNT/t.img" 2>/dev/null)
assert_eq "failures are counted for the corrupting source only" \
	"$BAD/corrupt/t.img $((SIZE / BS))" "$fails"
assert_eq "every block was verified" $((SIZE / BS)) \
	"$(getfattr --only-values -n user.imgcache.verified_blocks "$MNT/t.img")"
# The log says the first 8 failures per 10 s, not one line per block (a
# mirror serving a wrong image would flood it): the counters above are
# exact, the log only names the source.
nlines=$(grep -c "t.img: block .* from $BAD/corrupt/t.img does not match" \
	"$IMGCACHE_LOG")
assert_le "the log holds back repeated failures ($((SIZE / BS)) failed)" \
	"$nlines" 24

# Both sources wrong: EIO, never a byte.
if bounded dd if="$MNT/both.img" of="$T/both.out" bs=64K count=1 \
	status=none 2>/dev/null; then
	not_ok "a block no source serves right was served"
else
	ok "a block no source serves right fails (EIO)"
fi
stop_imgcache "$MNT"
# One "verify" row per source and save interval (2 s) carrying its count,
# not one per failed block: the 64 failures above take a few rows.
if command -v sqlite3 >/dev/null; then
	rows=$(sqlite3 "$CACHE/index.db" "SELECT count(*) || ' ' ||
		coalesce(sum(e.blocks), 0) FROM events e JOIN templates t ON
		e.tid = t.id WHERE t.name = 't.img' AND e.kind = 'verify'")
	assert_le "a few verify event rows, not one per failed block" \
		"${rows% *}" 10
	assert_eq "  ... carrying every failure" $((SIZE / BS)) "${rows#* }"
else
	note "sqlite3 not installed: the verify event rows are not counted"
fi
# imgcache-report --json: the figures, and the failures per source.
"$top_builddir/tools/imgcache-report" --cache-dir "$CACHE" --json \
	>"$T/report.json" || true
got=$(python3 - "$T/report.json" "$BAD/corrupt/t.img" <<'PYEOF'
import json, sys
def walk(o):
    if isinstance(o, dict):
        if o.get("name") == "t.img" or o.get("template") == "t.img":
            yield o
        for v in o.values():
            yield from walk(v)
    elif isinstance(o, list):
        for v in o:
            yield from walk(v)
d = json.load(open(sys.argv[1]))
for t in walk(d):
    c = t.get("counters", t)
    print(c.get("verify_failures"), c.get("verified_blocks"),
          c.get("verify_failures_by_source", {}).get(sys.argv[2]))
    break
PYEOF
)
assert_eq "imgcache-report --json: failures, verified, per source" \
	"$((SIZE / BS)) $((SIZE / BS)) $((SIZE / BS))" "$got"

# --- zero blocks never fetched; a corrupted manifest refused
ZSIZE=$((4 * 1048576 + 1000))
make_file_bytes "$T/z.img" "$ZSIZE"
dd if=/dev/zero of="$T/z.img" bs=64K seek=8 count=32 conv=notrunc \
	status=none # 2 MiB of zeros at 512K
"$MANIFEST" -o "$T/z.img.imgcache-manifest" "$T/z.img" ||
	fail "imgcache-manifest failed"
cp "$T/z.img.imgcache-manifest" "$T/bad.imgcache-manifest"
# Invert one byte of block 4's hash (setting it to a fixed value would
# leave the file unchanged once in 256 runs).
B=$(od -An -tu1 -j200 -N1 "$T/bad.imgcache-manifest" | tr -d ' ')
printf "\\$(printf '%03o' $((255 - B)))" |
	dd of="$T/bad.imgcache-manifest" bs=1 seek=200 conv=notrunc status=none
cmp -s "$T/z.img.imgcache-manifest" "$T/bad.imgcache-manifest" &&
	fail "the manifest was not changed"
start_faultsrv zsrv "$T/z.img" --manifest "$T/z.img.imgcache-manifest"
ZURL=$URL
start_faultsrv badm "$T/z.img" --manifest "$T/bad.imgcache-manifest"
BADM=$URL
# Manifest blocks of 256K, four of ours each.
make_file_bytes "$T/w.img" $((2 * 1048576))
"$MANIFEST" --block-size 256K -o "$T/w.imgcache-manifest" "$T/w.img" ||
	fail "imgcache-manifest failed"
start_faultsrv wsrv "$T/w.img" --manifest "$T/w.imgcache-manifest"
WURL=$URL
rm -rf "$CACHE"
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template z.img]
origin = $ZURL/ok/z.img

[template badm.img]
origin = $BADM/ok/z.img

[template w.img]
origin = $WURL/ok/w.img

[template wc.img]
origin = $WURL/corrupt/w.img
mirror = $WURL/ok/w.img
EOF
start_imgcache "$T/conf" "$MNT"
if bounded cmp "$MNT/z.img" "$T/z.img"; then
	ok "a template with zero blocks reads back"
else
	not_ok "a template with zero blocks reads back wrong"
fi
assert_eq "its zero blocks were not fetched" $((ZSIZE - 2097152)) \
	"$(range_bytes "$T/zsrv.log")"
assert_eq "user.imgcache.zero_blocks_skipped" 32 \
	"$(getfattr --only-values -n user.imgcache.zero_blocks_skipped \
		"$MNT/z.img")"
# Readahead's checked fills count what they fetched, as plain ones do.
ra_used=$(getfattr --only-values -n user.imgcache.readahead_used "$MNT/z.img")
ra_fetched=$(getfattr --only-values -n user.imgcache.readahead_fetched \
	"$MNT/z.img")
if [ "$ra_used" -gt 0 ]; then
	assert_le "readahead_used <= readahead_fetched with a manifest" \
		"$ra_used" "$ra_fetched"
else
	ok "# SKIP no readahead ran on z.img"
fi
# Larger manifest blocks: a fill fetches the whole manifest block and
# keeps all of it, so the other three blocks in it cost no fetch.
for b in 2 0 3 1; do
	bounded dd if="$MNT/w.img" of=/dev/null bs=64K skip=$b count=1 \
		iflag=direct status=none || not_ok "w.img block $b failed"
done
assert_eq "four blocks of one 256K manifest block: one 256K fetch" 262144 \
	"$(range_bytes "$T/wsrv.log")"
if bounded cmp "$MNT/w.img" "$T/w.img"; then
	ok "a template with 256K manifest blocks reads back"
else
	not_ok "a template with 256K manifest blocks reads back wrong"
fi
# About once: two of the kernel's concurrent readahead requests landing
# in one manifest block each fetch all of it (its hash needs every byte),
# so a neighbour's blocks may come twice; without keeping widened blocks
# a whole read fetched 1.5x.
assert_le "... each byte fetched about once (1.25x at most)" \
	"$(range_bytes "$T/wsrv.log")" $((2 * 1048576 * 5 / 4))
# The same with a corrupting primary and a good mirror: block 1's fetch,
# widened to its 256K manifest block, fails its check and is asked of the
# mirror for block 1 only; the other three blocks of that manifest block
# came from the corrupting source and must not be kept (they were, with
# checksums of the wrong bytes, before the fix).
bounded dd if="$MNT/wc.img" of=/dev/null bs=64K skip=1 count=1 \
	iflag=direct status=none || not_ok "wc.img block 1 failed"
wc_ok=1
for b in 0 2 3 1; do
	bounded dd if="$MNT/wc.img" of="$T/wc.blk" bs=64K skip=$b count=1 \
		iflag=direct status=none || wc_ok=0
	extract "$T/w.img" $((b * 65536)) 65536 "$T/wc.want"
	cmp -s "$T/wc.blk" "$T/wc.want" || { wc_ok=0; note "wc.img block $b differs"; }
done
if [ "$wc_ok" = 1 ]; then
	ok "a widened fill from a corrupting source keeps no unchecked neighbour"
else
	not_ok "a widened fill from a corrupting source served a neighbour's wrong bytes"
fi
if bounded cmp "$MNT/badm.img" "$T/z.img"; then
	ok "a template with a corrupted manifest is served without it"
else
	not_ok "a template with a corrupted manifest reads back wrong"
fi
if grep "template badm.img: manifest" "$IMGCACHE_LOG" | grep -q refused; then
	ok "the corrupted manifest is refused with a warning"
else
	show_log "$IMGCACHE_LOG"
	not_ok "no warning for the corrupted manifest"
fi
stop_imgcache "$MNT"

# --- file origins: a stale manifest, delta fills
make_file_bytes "$T/src/v.img" $((8 * 1048576))
"$MANIFEST" "$T/src/v.img" || fail "imgcache-manifest failed"
cp "$T/src/v.img" "$T/v1.img"
# Stale: the template changes (same size), its manifest does not.
make_file_bytes "$T/src/s.img" $((1048576))
"$MANIFEST" "$T/src/s.img" || fail "imgcache-manifest failed"
write_at "$T/src/s.img" $((3 * BS)) 100
cp "$T/src/s.img" "$T/s.copy"
rm -rf "$CACHE"
ORIG=$T/origin
start_originfs "$T/src" "$T/originfs.log" "$ORIG"
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template v.img]
origin = $ORIG/v.img

[template s.img]
origin = $ORIG/s.img
EOF
start_imgcache "$T/conf" "$MNT"
wrong=0 eio=0
for b in $(seq 0 15); do
	if bounded dd if="$MNT/s.img" of="$T/blk" bs=64K skip="$b" count=1 iflag=direct \
		status=none 2>/dev/null; then
		extract "$T/s.copy" $((b * BS)) $BS "$T/want"
		cmp -s "$T/blk" "$T/want" || wrong=$((wrong + 1))
	else
		eio=$((eio + 1))
	fi
done
assert_eq "a stale manifest: no wrong byte served" 0 "$wrong"
assert_eq "a stale manifest: the changed block fails (EIO)" 1 "$eio"

if bounded cmp "$MNT/v.img" "$T/v1.img"; then
	ok "v1 reads back"
else
	not_ok "v1 reads back wrong"
fi
wait_hashed v.img 128
before=$(count_bytes "$T/originfs.log" /v.img)
# v2: 4 blocks rewritten in place, 1 MiB appended; published with a new
# manifest (a new file: a new inode, hence a new generation), built from
# the image before it is renamed into place (mv keeps its mtime, to which
# the manifest is bound).
cp "$T/v1.img" "$T/v2.img"
for b in 5 17 60 99; do write_at "$T/v2.img" $((b * BS)) $BS; done
head -c 1048576 /dev/urandom >>"$T/v2.img"
cp "$T/v2.img" "$T/src/v.img.new"
"$MANIFEST" -o "$T/src/v.img.imgcache-manifest" "$T/src/v.img.new" ||
	fail "imgcache-manifest failed"
mv "$T/src/v.img.new" "$T/src/v.img"
if bounded cmp "$MNT/v.img" "$T/v2.img"; then
	ok "v2 reads back"
else
	not_ok "v2 reads back wrong"
fi
after=$(count_bytes "$T/originfs.log" /v.img)
changed=$((4 * BS + 1048576))
assert_le "v2 pulled about only its changed blocks from the origin" \
	$((after - before)) $((changed + changed / 20))
assert_le "... and copied the rest" $((8 * 1048576 - 4 * BS)) \
	"$(getfattr --only-values -n user.imgcache.local_bytes "$MNT/v.img")"

wait_hashed v.img 144
# Another template: v2's first 3 MiB at an offset of 1 MiB, after 1 MiB
# of its own.
head -c 1048576 /dev/urandom >"$T/o.img"
head -c $((3 * 1048576)) "$T/v2.img" >>"$T/o.img"
cp "$T/o.img" "$T/src/o.img"
"$MANIFEST" "$T/src/o.img" || fail "imgcache-manifest failed"
cat >>"$T/conf" <<EOF

[template o.img]
origin = $ORIG/o.img
EOF
reload_imgcache
if bounded cmp "$MNT/o.img" "$T/o.img"; then
	ok "a template sharing blocks with another reads back"
else
	not_ok "a template sharing blocks with another reads back wrong"
fi
assert_le "it pulled only its own blocks from the origin" \
	"$(count_bytes "$T/originfs.log" /o.img)" $((1048576 + 1048576 / 20))
stop_imgcache "$MNT"
stop_originfs "$ORIG"

# --- a template whose every block is cached already: readers that wait
# for a block another thread copies locally (readahead claimed it) are
# woken when it lands, not at their deadline.
make_file_bytes "$T/src/l1.img" $((32 * 1048576))
"$MANIFEST" "$T/src/l1.img" || fail "imgcache-manifest failed"
cp -p "$T/src/l1.img" "$T/src/l2.img" # -p: the manifest is bound to the mtime
cp "$T/src/l1.img.imgcache-manifest" "$T/src/l2.img.imgcache-manifest"
rm -rf "$CACHE"
start_originfs "$T/src" "$T/originfs2.log" "$ORIG"
global_section | sed 's/^origin_timeout = .*/origin_timeout = 10s/' >"$T/conf"
cat >>"$T/conf" <<EOC

[template l1.img]
origin = $ORIG/l1.img

[template l2.img]
origin = $ORIG/l2.img
EOC
start_imgcache "$T/conf" "$MNT"
assert_same "l1 reads back" "$MNT/l1.img" "$T/src/l1.img"
wait_hashed l1.img 512
t0=$(now_ms)
assert_same "l2 (every block also l1's) reads back" "$MNT/l2.img" "$T/src/l2.img"
t1=$(now_ms)
assert_le "l2 read within origin_timeout: no reader slept to its deadline (ms)" \
	$((t1 - t0)) 10000
assert_eq "l2 pulled no block from the origin" 0 \
	"$(count_bytes "$T/originfs2.log" /l2.img)"
stop_imgcache "$MNT"
stop_originfs "$ORIG"
