#!/bin/sh
# t-manifest-bind: a manifest is bound to the version of the template it
# was made from (the template's mtime, recorded by imgcache-manifest).  A
# new version of the same size published before its manifest (the usual
# order) while the old version is cached: the origin still serves the old
# manifest, whose hashes and zero blocks would let the old version's
# cached blocks stand in for the new ones (delta fill).  Every block read
# must be the new version's or EIO, never the old one's; no local copy is
# made.  Once the new version's manifest is published, the next generation
# copies again: origin bytes = about the blocks not cached.  A file origin
# (mtimes set with touch -d) and an HTTP one (nginx, Last-Modified).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
command -v sqlite3 >/dev/null || skip "sqlite3 not installed"

MANIFEST=$top_builddir/tools/imgcache-manifest
[ -x "$MANIFEST" ] || fail "$MANIFEST is not built (run make)"
BS=65536
NB=64
SIZE=$((NB * BS))
CACHE=$T/cache
MNT=$T/mnt

# wait_hashed NAME GEN N: until the index lists N blocks of generation GEN
# of template NAME with their hashes (a delta fill finds only committed
# blocks; the writer commits about once a second, later under load).  The
# generation is named, not taken from the index's templates row: that row
# is committed by the same lagging writer, and while it still said 1 the
# wait passed on generation 1's rows, before generation 2's were there to
# copy from (CI, and 3 runs of 4 under a helper's load: nothing copied).
wait_hashed() {
	wait_for 30 sh -c "[ \$(sqlite3 '$CACHE/index.db' \"SELECT count(*)
		FROM blocks b JOIN templates t ON b.tid = t.id
		WHERE t.name = '$1' AND b.gen = $2 AND
		b.sha IS NOT NULL\") -ge $3 ]" ||
		fail "the index never listed $3 hashed blocks of $1 generation $2"
}

xattr() { getfattr --only-values -n "user.imgcache.$1" "$2" 2>/dev/null; }

# v1: random, blocks 10..13 zero.  v2, same size: blocks 3, 20, 40
# rewritten, block 11 (zero in v1) data, block 30 (data in v1) zeros.
make_file_bytes "$T/v1.img" "$SIZE"
dd if=/dev/zero of="$T/v1.img" bs=64K seek=10 count=4 conv=notrunc status=none
cp "$T/v1.img" "$T/v2.img"
for b in 3 20 40 11; do write_at "$T/v2.img" $((b * BS)) $BS; done
dd if=/dev/zero of="$T/v2.img" bs=64K seek=30 count=1 conv=notrunc status=none
CHANGED="3 11 20 30 40"
# HTTP's v3: v2 with block 50 rewritten.
cp "$T/v2.img" "$T/v3.img"
write_at "$T/v3.img" $((50 * BS)) $BS
touch -d "2024-01-01 00:00:00 UTC" "$T/v1.img"
touch -d "2024-02-01 00:00:00 UTC" "$T/v2.img"
touch -d "2024-03-01 00:00:00 UTC" "$T/v3.img"

# check_blocks FILE WANT OLD DESC: read FILE block by block (O_DIRECT: from
# the daemon, not the page cache); each block that reads must be WANT's;
# WRONG counts those that are not (OLD's bytes among them), EIO those that
# fail.
check_blocks() {
	WRONG=0 EIO=0 OLDB=0
	b=0
	while [ $b -lt $NB ]; do
		if bounded dd if="$1" of="$T/blk" bs=64K skip=$b count=1 \
			iflag=direct status=none 2>/dev/null; then
			extract "$2" $((b * BS)) $BS "$T/want"
			extract "$3" $((b * BS)) $BS "$T/old"
			if ! cmp -s "$T/blk" "$T/want"; then
				WRONG=$((WRONG + 1))
				cmp -s "$T/blk" "$T/old" && OLDB=$((OLDB + 1))
			fi
		else
			EIO=$((EIO + 1))
		fi
		b=$((b + 1))
	done
	assert_eq "$4: every block read is the new version's" 0 "$WRONG"
	assert_eq "$4: no block is the old version's" 0 "$OLDB"
	assert_le "$4: only changed blocks fail (EIO)" "$EIO" 5
}

# ------------------------------------------------------------ file origin
mkdir -p "$T/src"
cp -p "$T/v1.img" "$T/src/b.img"
# Built on the image server once the image is in place: bound to v1.
"$MANIFEST" "$T/src/b.img" >/dev/null || fail "imgcache-manifest failed"
ORIG=$T/origin
start_originfs "$T/src" "$T/originfs.log" "$ORIG"
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template b.img]
origin = $ORIG/b.img
EOF
start_imgcache "$T/conf" "$MNT"
if bounded cmp "$MNT/b.img" "$T/v1.img"; then
	ok "file origin: v1 reads back"
else
	not_ok "file origin: v1 reads back wrong"
fi
wait_hashed b.img 1 60
local0=$(xattr local_bytes "$MNT/b.img")

# v2 published, its manifest not yet: the origin serves v1's.
cp -p "$T/v2.img" "$T/src/b.img.new" && mv "$T/src/b.img.new" "$T/src/b.img"
check_blocks "$MNT/b.img" "$T/v2.img" "$T/v1.img" "file origin, v1's manifest"
assert_eq "file origin: no local copy on another version's manifest" \
	"$local0" "$(xattr local_bytes "$MNT/b.img")"
if grep -q "template b.img: generation 2: manifest of another version of the template (mtime 2024-01-01 00:00:00.000000000 UTC, origin's 2024-02-01 00:00:00.000000000 UTC): verifying fetched blocks only" \
	"$IMGCACHE_LOG"; then
	ok "file origin: the log says why the manifest only checks"
else
	show_log "$IMGCACHE_LOG"
	not_ok "file origin: no log line for the unbound manifest"
fi
# v2's 56 unchanged data blocks were fetched and checked (hashed).
wait_hashed b.img 2 56

# v2's manifest published, and v2 again (same bytes and mtime, a new
# inode: a new generation) : bound, delta fill works again.
"$MANIFEST" "$T/src/b.img" >/dev/null || fail "imgcache-manifest failed"
cp -p "$T/src/b.img" "$T/src/b.img.new" && mv "$T/src/b.img.new" "$T/src/b.img"
before=$(count_bytes "$T/originfs.log" /b.img)
local1=$(xattr local_bytes "$MNT/b.img")
if bounded cmp "$MNT/b.img" "$T/v2.img"; then
	ok "file origin: v2 with its own manifest reads back"
else
	not_ok "file origin: v2 with its own manifest reads back wrong"
fi
after=$(count_bytes "$T/originfs.log" /b.img)
# Not cached: blocks 3, 11, 20, 40 (EIO before); 30 and 10..13 are zeros.
assert_le "file origin: v2's own manifest: the origin sent only the blocks not cached" \
	$((after - before)) $((4 * BS + 4 * BS / 20))
local2=$(xattr local_bytes "$MNT/b.img")
assert_le "file origin: ... and the rest came from local copies" \
	$((56 * BS)) $((local2 - local1))
if [ $((after - before)) -gt $((4 * BS + 4 * BS / 20)) ] ||
	[ $((local2 - local1)) -lt $((56 * BS)) ]; then
	# Seen once in CI (all 60 data blocks fetched, none copied), never
	# reproduced: say what the daemon and the index knew.
	show_log "$IMGCACHE_LOG" 60
	sqlite3 "$CACHE/index.db" "SELECT t.generation, b.gen, count(*),
		count(b.sha) FROM blocks b JOIN templates t ON b.tid = t.id
		GROUP BY b.gen" | sed 's/^/# index: template gen, gen, rows, hashed: /' >&2
fi
stop_imgcache "$MNT"
stop_originfs "$ORIG"

# ------------------------------------------------------------ HTTP origin
if [ ! -x "$NGINX" ] || ! command -v curl >/dev/null 2>&1; then
	skip "nginx or curl not installed: the HTTP case is not run"
fi
rm -rf "$CACHE"
mkdir -p "$T/www"
cp -p "$T/v1.img" "$T/www/h.img"
"$MANIFEST" "$T/www/h.img" >/dev/null || fail "imgcache-manifest failed"
PN=$(free_port)
nginx_config "$PN" "log_format r '\$uri \$status \$body_bytes_sent';
    access_log $T/nginx/access.log r;"
"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
_register $! -
wait_for 10 curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PN/h.img" || {
	show_log "$T/nginx/error.log"
	fail "nginx did not start"
}
# http_bytes: body bytes nginx sent for h.img (not its manifest).
http_bytes() {
	awk '$1 == "/h.img" { s += $3 } END { printf "%d\n", s }' \
		"$T/nginx/access.log"
}
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template h.img]
origin = http://127.0.0.1:$PN/h.img
revalidate = 0
EOF
start_imgcache "$T/conf" "$MNT"
if bounded cmp "$MNT/h.img" "$T/v1.img"; then
	ok "HTTP origin: v1 reads back"
else
	not_ok "HTTP origin: v1 reads back wrong"
fi
wait_hashed h.img 1 60
local0=$(xattr local_bytes "$MNT/h.img")

cp -p "$T/v2.img" "$T/www/h.img.new" && mv "$T/www/h.img.new" "$T/www/h.img"
check_blocks "$MNT/h.img" "$T/v2.img" "$T/v1.img" "HTTP origin, v1's manifest"
assert_eq "HTTP origin: no local copy on another version's manifest" \
	"$local0" "$(xattr local_bytes "$MNT/h.img")"
if grep -q "template h.img: generation 2: manifest of another version of the template (mtime 2024-01-01 00:00:00 UTC, origin's 2024-02-01 00:00:00 UTC)" \
	"$IMGCACHE_LOG"; then
	ok "HTTP origin: the log says why the manifest only checks"
else
	show_log "$IMGCACHE_LOG"
	not_ok "HTTP origin: no log line for the unbound manifest"
fi
wait_hashed h.img 2 56

# v3 (v2 and block 50) published with its own manifest, built from the
# image before the image is renamed into place (the daemon's housekeeping
# may look at the origin at any moment: a manifest written after the
# image leaves a window in which the new generation takes the old one):
# bound (Last-Modified, whole seconds); delta fill from v2's blocks.
cp -p "$T/v3.img" "$T/www/h.img.new"
"$MANIFEST" -o "$T/www/h.img.imgcache-manifest" "$T/www/h.img.new" \
	>/dev/null || fail "imgcache-manifest failed"
mv "$T/www/h.img.new" "$T/www/h.img"
before=$(http_bytes)
local1=$(xattr local_bytes "$MNT/h.img")
if bounded cmp "$MNT/h.img" "$T/v3.img"; then
	ok "HTTP origin: v3 with its own manifest reads back"
else
	not_ok "HTTP origin: v3 with its own manifest reads back wrong"
fi
after=$(http_bytes)
assert_le "HTTP origin: v3's own manifest: the origin sent only the blocks not cached" \
	$((after - before)) $((5 * BS + 5 * BS / 20))
assert_le "HTTP origin: ... and the rest came from local copies" \
	$((55 * BS)) $(($(xattr local_bytes "$MNT/h.img") - local1))
stop_imgcache "$MNT"
