#!/bin/sh
# t-manifest-withdrawn: a manifest the operator withdraws stops being used.
# A manifest of another version of the template (not bound: it only
# checks) makes the blocks it describes wrongly fail (EIO).  When the
# origin then answers that it has no manifest (the file is gone), the
# daemon believes it: at a restart, the stored copy it asks again for is
# removed and the generation is served without one; while it runs, the
# refetch a failing block makes drops the generation's manifest.  Either
# way every block then reads the origin's bytes, none fails.  So it does
# once the operator sets manifest = none, and the stored copy goes.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MANIFEST=$top_builddir/tools/imgcache-manifest
[ -x "$MANIFEST" ] || fail "$MANIFEST is not built (run make)"
BS=65536
NB=16
CACHE=$T/cache
MNT=$T/mnt

# read_block FILE B: block B of FILE reads (O_DIRECT).
read_block() {
	bounded dd if="$1" of=/dev/null bs=64K skip="$2" count=1 iflag=direct \
		status=none 2>/dev/null
}

# withdrawn WHEN LOGLINE: after reading the blocks (read_blocks), none
# failed nor read wrong, $STORED is gone, and the log has LOGLINE.
withdrawn() {
	assert_eq "$1: no block fails" 0 "$EIO"
	assert_eq "... and none reads wrong" 0 "$WRONG"
	if [ -e "$STORED" ]; then
		not_ok "the stored manifest $STORED was kept"
	else
		ok "the stored manifest was removed"
	fi
	grep -q "$2" "$IMGCACHE_LOG" && ok "the log says so" ||
		{ show_log "$IMGCACHE_LOG"; not_ok "no log line: $2"; }
}

# stale NAME: $T/src/NAME with the manifest of its previous version: v1
# hashed, then block 5 rewritten in place (a later mtime, the same size).
stale() {
	make_file_bytes "$T/src/$1" $((NB * BS))
	touch -d "2024-01-01 00:00:00 UTC" "$T/src/$1"
	"$MANIFEST" "$T/src/$1" || fail "imgcache-manifest failed"
	write_at "$T/src/$1" $((5 * BS)) $BS
	touch -d "2024-02-01 00:00:00 UTC" "$T/src/$1"
}

mkdir -p "$T/src"
stale w.img
stale r.img
stale d.img
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template w.img]
origin = $T/src/w.img

[template r.img]
origin = $T/src/r.img

[template d.img]
origin = $T/src/d.img
EOF

# --- at a restart: w.img's stale manifest is stored, then withdrawn while
# the daemon is stopped.
start_imgcache "$T/conf" "$MNT"
read_block "$MNT/w.img" 0 || not_ok "w.img block 0 failed"
if read_block "$MNT/w.img" 5; then
	not_ok "w.img block 5 read with the other version's manifest"
else
	ok "w.img's changed block fails its check (the manifest is stale)"
fi
stop_imgcache "$MNT"
set -- "$CACHE"/data/w.img.*.imgcache-manifest
[ -f "$1" ] || fail "no stored manifest of w.img in $CACHE/data"
STORED=$1
rm "$T/src/w.img.imgcache-manifest"
start_imgcache "$T/conf" "$MNT"
read_blocks "$MNT/w.img" "$T/src/w.img" $NB
withdrawn "after a restart, a withdrawn manifest" \
	"template w.img: generation .*: the origin has no manifest now; removing the stored manifest"

# --- while it runs: r.img's manifest is taken (block 0), then withdrawn
# before any block failed; the first failure fetches it again (no 30 s
# limit yet), and finds none.
read_block "$MNT/r.img" 0 || not_ok "r.img block 0 failed"
set -- "$CACHE"/data/r.img.*.imgcache-manifest
[ -f "$1" ] || fail "no stored manifest of r.img in $CACHE/data"
STORED=$1
rm "$T/src/r.img.imgcache-manifest"
read_blocks "$MNT/r.img" "$T/src/r.img" $NB
withdrawn "a manifest withdrawn while running" \
	"template r.img: the origin has no manifest now; generation .* is served without a manifest"
# --- not withdrawn but damaged: d.img's manifest is taken (block 0), then
# replaced at the origin by bytes that are no manifest (a reply cut or
# mangled on the way looks the same).  The refetch block 5 makes is
# refused: that is no word from the origin that it has none, so checking
# goes on: block 5 (not the manifest's version) fails, the stored copy
# stays, the other blocks read right.
read_block "$MNT/d.img" 0 || not_ok "d.img block 0 failed"
set -- "$CACHE"/data/d.img.*.imgcache-manifest
[ -f "$1" ] || fail "no stored manifest of d.img in $CACHE/data"
DSTORED=$1
head -c 1000 /dev/urandom >"$T/src/d.img.imgcache-manifest"
if read_block "$MNT/d.img" 5; then
	not_ok "a damaged manifest turned checking off: block 5 was served unchecked"
else
	ok "a damaged manifest keeps the checking: block 5 fails (EIO)"
fi
[ -f "$DSTORED" ] && ok "... and the stored manifest is kept" ||
	not_ok "the stored manifest $DSTORED was removed"
read_blocks "$MNT/d.img" "$T/src/d.img" 5
assert_eq "d.img: blocks 0-4 read the origin's bytes" "0 0" "$EIO $WRONG"
pid=$IMGCACHE_PID
if bounded cmp "$MNT/r.img" "$T/src/r.img" &&
	bounded cmp "$MNT/w.img" "$T/src/w.img"; then
	ok "both templates read back exactly"
else
	not_ok "a template reads back wrong"
fi
assert_eq "... by the same daemon" "$pid" "$IMGCACHE_PID"
stop_imgcache "$MNT"

# --- the operator turns d.img's manifest off (manifest = none): at the
# next start its stored copy goes (it would count in the disk use for
# good, never used), and every block reads the origin's bytes, block 5
# (which the manifest's version does not have) too.
sed -i '/^\[template d.img\]/a manifest = none' "$T/conf"
start_imgcache "$T/conf" "$MNT"
read_blocks "$MNT/d.img" "$T/src/d.img" $NB
STORED=$DSTORED
withdrawn "manifest = none" \
	"template d.img: manifest = none: removed the stored manifest"
stop_imgcache "$MNT"
