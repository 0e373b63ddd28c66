#!/bin/sh
# t-manifest-heal: a stale block manifest (the previous version's, left in
# place while the new image was published first) never makes the daemon
# serve a wrong byte: not through a local copy of the old version's block,
# not through a zero block the old manifest knew; it only checks, and the
# changed blocks fail (EIO).  Once the publisher uploads the new manifest,
# the failing reads fetch it again (conditionally, at most once per 30 s
# per template) and succeed, without a restart; a corrupting origin is
# still caught.  Pins carry over to a new generation and are pre-warmed
# there, mostly from local copies of the previous one (origin bytes from
# the origin's log: about only the changed pinned blocks).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
command -v sqlite3 >/dev/null || skip "sqlite3 not installed"

MANIFEST=$top_builddir/tools/imgcache-manifest
[ -x "$MANIFEST" ] || fail "$MANIFEST is not built (run make)"
BS=65536
CACHE=$T/cache
MNT=$T/mnt

# wait_hashed NAME N: until the index lists N hashed blocks of NAME's
# current generation (a delta fill finds only committed blocks).
wait_hashed() {
	wait_for 20 sh -c "[ \$(sqlite3 '$CACHE/index.db' \"SELECT count(*)
		FROM blocks b JOIN templates t ON b.tid = t.id AND
		b.gen = t.generation WHERE t.name = '$1' AND
		b.sha IS NOT NULL\") -ge $2 ]" ||
		fail "the index never listed $2 hashed blocks of $1"
}

# block_ok FILE WANT B: block B of FILE reads back as WANT's.
block_ok() {
	dd if="$1" of="$T/blk.$3" bs=64K skip="$3" count=1 iflag=direct \
		status=none 2>/dev/null || return 1
	extract "$2" $(($3 * BS)) $BS "$T/want.$3"
	cmp -s "$T/blk.$3" "$T/want.$3"
}

# f.img (file origin): v1 with a zero block (4) and its manifest.
mkdir -p "$T/src"
make_file_bytes "$T/src/f.img" $((2 * 1048576))
dd if=/dev/zero of="$T/src/f.img" bs=64K seek=4 count=1 conv=notrunc \
	status=none
"$MANIFEST" "$T/src/f.img" || fail "imgcache-manifest failed"
cp "$T/src/f.img" "$T/f1.img"
# p.img (file origin): 4 MiB, all pinned.
make_file_bytes "$T/src/p.img" $((4 * 1048576))
"$MANIFEST" "$T/src/p.img" || fail "imgcache-manifest failed"
cp "$T/src/p.img" "$T/p1.img"
# h.img (HTTP): v2 served with v1's manifest, by an origin corrupting
# every block and a correct mirror.
make_file_bytes "$T/h1.img" $((1048576))
"$MANIFEST" -o "$T/h.imgcache-manifest" "$T/h1.img" ||
	fail "imgcache-manifest failed"
cp "$T/h1.img" "$T/h2.img"
write_at "$T/h2.img" $((3 * BS)) 100
start_faultsrv hbad "$T/h2.img" --manifest "$T/h.imgcache-manifest"
HBAD=$URL
start_faultsrv hgood "$T/h2.img" --manifest "$T/h.imgcache-manifest"
HGOOD=$URL

ORIG=$T/origin
start_originfs "$T/src" "$T/originfs.log" "$ORIG"
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template f.img]
origin = $ORIG/f.img

[template p.img]
origin = $ORIG/p.img
pin = boot:0-4M

[template h.img]
origin = $HBAD/corrupt/h.img
mirror = $HGOOD/ok/h.img
EOF
start_imgcache "$T/conf" "$MNT"

if bounded cmp "$MNT/f.img" "$T/f1.img"; then
	ok "f.img v1 reads back"
else
	not_ok "f.img v1 reads back wrong"
fi
if wait_for 30 sh -c "[ \"\$(getfattr --only-values -n \
	user.imgcache.pinned_present_bytes.boot '$MNT/p.img' 2>/dev/null)\" \
	= $((4 * 1048576)) ]"; then
	ok "p.img's pins are pre-warmed"
else
	not_ok "p.img's pins were never all pre-warmed"
fi
wait_hashed f.img 31
wait_hashed p.img 64

# --- f.img v2 published image first: blocks 2 and 4 (was zeros) changed,
# the manifest left as it was (older than the image now).
cp "$T/f1.img" "$T/f2.img"
write_at "$T/f2.img" $((2 * BS)) $BS
write_at "$T/f2.img" $((4 * BS)) $BS
cp "$T/f2.img" "$T/src/f.img.new" && mv "$T/src/f.img.new" "$T/src/f.img"
read_blocks "$MNT/f.img" "$T/f2.img" 32
assert_eq "a stale manifest: no wrong byte (no old copy, no zeros)" 0 "$WRONG"
assert_eq "a stale manifest: the two changed blocks fail (EIO)" 2 "$EIO"
# h.img: only its changed block fails (the corrupting origin's bytes are
# refused, the mirror's right ones served).
read_blocks "$MNT/h.img" "$T/h2.img" 16
assert_eq "a stale manifest over HTTP: no wrong byte" 0 "$WRONG"
assert_eq "a stale manifest over HTTP: the changed block fails" 1 "$EIO"
mreq=$(grep -c 'imgcache-manifest' "$T/hbad.log")

# --- the publisher uploads the new manifests: the reads heal by
# themselves within the refetch interval (30 s), without a restart.
"$MANIFEST" "$T/src/f.img" || fail "imgcache-manifest failed"
"$MANIFEST" -o "$T/h.imgcache-manifest" "$T/h2.img" ||
	fail "imgcache-manifest failed"
pid_before=$IMGCACHE_PID
if wait_for 75 sh -c "dd if='$MNT/f.img' of=/dev/null bs=64K skip=2 \
	count=1 iflag=direct status=none 2>/dev/null"; then
	ok "f.img's changed blocks read once the new manifest is published"
else
	not_ok "f.img's changed blocks still fail with the new manifest"
fi
if wait_for 75 block_ok "$MNT/h.img" "$T/h2.img" 3; then
	ok "h.img's changed block reads once the new manifest is published"
else
	not_ok "h.img's changed block still fails with the new manifest"
fi
assert_eq "... by the same daemon" "$pid_before" "$IMGCACHE_PID"
kill -0 "$IMGCACHE_PID" || not_ok "the daemon died"
if bounded cmp "$MNT/f.img" "$T/f2.img"; then
	ok "f.img v2 reads back exactly"
else
	not_ok "f.img v2 reads back wrong"
fi
if bounded cmp "$MNT/h.img" "$T/h2.img"; then
	ok "h.img reads back exactly"
else
	not_ok "h.img reads back wrong"
fi
if grep -q "h.img: block 3 .* from $HBAD/corrupt/h.img does not match" \
	"$IMGCACHE_LOG"; then
	ok "the corrupting origin is still caught on the healed block"
else
	show_log "$IMGCACHE_LOG"
	not_ok "no log line names the corrupting origin for block 3"
fi
if grep -q "h.img: a block of generation .* fetching its manifest again" \
	"$IMGCACHE_LOG"; then
	ok "the log says the manifest was fetched again"
else
	not_ok "no log line for the manifest's refetch"
fi
awk '/imgcache-manifest/ && $4 == 304 { n++ } END { exit n ? 0 : 1 }' \
	"$T/hbad.log" && ok "the refetch of an unchanged manifest was a 304" ||
	not_ok "no conditional refetch (304) of the unchanged manifest"
after=$(grep -c 'imgcache-manifest' "$T/hbad.log")
assert_le "the manifest was refetched at most twice (30 s apart)" \
	$((after - mreq)) 1

# --- p.img v2: blocks 10 and 40 changed, published manifest and image
# in an order that never shows a stale pair (the manifest built from the
# new image before it is renamed into place: older than the manifest).
cp "$T/p1.img" "$T/p2.img"
write_at "$T/p2.img" $((10 * BS)) $BS
write_at "$T/p2.img" $((40 * BS)) $BS
cp "$T/p2.img" "$T/src/p.img.new"
"$MANIFEST" -o "$T/src/p.img.imgcache-manifest" "$T/src/p.img.new" ||
	fail "imgcache-manifest failed"
before=$(count_bytes "$T/originfs.log" /p.img)
local_before=$(getfattr --only-values -n user.imgcache.local_bytes \
	"$MNT/p.img" 2>/dev/null)
ino1=$(stat -c %i "$MNT/p.img")
mv "$T/src/p.img.new" "$T/src/p.img"
# An open notices the change (a new generation, a new inode); the warmer
# takes the pins there.
wait_for 10 sh -c ": <'$MNT/p.img'; [ \"\$(stat -c %i '$MNT/p.img')\" \
	!= $ino1 ]" || not_ok "no new generation of p.img noticed"
if wait_for 30 sh -c "[ \"\$(getfattr --only-values -n \
	user.imgcache.pinned_present_bytes.boot '$MNT/p.img' 2>/dev/null)\" \
	= $((4 * 1048576)) ] && [ \"\$(getfattr --only-values -n \
	user.imgcache.local_bytes '$MNT/p.img' 2>/dev/null)\" -gt \
	$local_before ]"; then
	ok "p.img's pins carried over to v2 and were pre-warmed"
else
	getfattr -d -m - "$MNT/p.img" >&2
	not_ok "p.img's pins were not pre-warmed in v2"
fi
pulled=$(($(count_bytes "$T/originfs.log" /p.img) - before))
assert_le "the pre-warm pulled about only the changed pinned blocks" \
	"$pulled" $((2 * BS + 2 * BS / 20))
local_now=$(getfattr --only-values -n user.imgcache.local_bytes \
	"$MNT/p.img" 2>/dev/null)
assert_le "... and copied the other 62 locally" $((62 * BS)) \
	$((local_now - local_before))
if bounded cmp "$MNT/p.img" "$T/p2.img"; then
	ok "p.img v2 reads back"
else
	not_ok "p.img v2 reads back wrong"
fi
assert_eq "reading it fetched nothing more" "$pulled" \
	$(($(count_bytes "$T/originfs.log" /p.img) - before))
stop_imgcache "$MNT"
stop_originfs "$ORIG"

# --- a manifest not bound to the template's version (made before the
# template's mtime moved: its recorded mtime is not the origin's
# Last-Modified) spares no fetch, also after a restart reopened our copy
# of it (served without a Last-Modified of its own).
make_file_bytes "$T/u.img" $((1048576))
dd if=/dev/zero of="$T/u.img" bs=64K seek=4 count=1 conv=notrunc \
	status=none
"$MANIFEST" -o "$T/u.imgcache-manifest" "$T/u.img" ||
	fail "imgcache-manifest failed"
touch -d "@$(($(stat -c %Y "$T/u.img") + 10))" "$T/u.img"
start_faultsrv usrv "$T/u.img" --manifest "$T/u.imgcache-manifest" \
	--manifest-no-lm
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template u.img]
origin = $URL/ok/u.img
EOF
start_imgcache "$T/conf" "$MNT"
bounded dd if="$MNT/u.img" of=/dev/null bs=64K skip=1 count=1 iflag=direct \
	status=none || not_ok "u.img block 1 failed"
stop_imgcache "$MNT"
n0=$(wc -l <"$T/usrv.log")
start_imgcache "$T/conf" "$MNT"
if bounded dd if="$MNT/u.img" of="$T/blk" bs=64K skip=4 count=1 \
	iflag=direct status=none && extract "$T/u.img" $((4 * BS)) $BS \
	"$T/want" && cmp -s "$T/blk" "$T/want"; then
	ok "u.img's zero block reads back"
else
	not_ok "u.img's zero block reads back wrong"
fi
# A ranged GET after the restart covering the zero block (at 256K).
if awk -v n0="$n0" 'NR > n0 && $1 == "GET" && $2 == "/ok/u.img" &&
	$3 ~ /^bytes=/ { split(substr($3, 7), r, "-")
		if (r[1] + 0 <= 262144 && r[2] + 0 >= 262144) n++ }
	END { exit n ? 0 : 1 }' "$T/usrv.log"; then
	ok "an unbound manifest spares no fetch, also after a restart"
else
	cat "$T/usrv.log" >&2
	not_ok "its zero block was not fetched: the restart believed an unbound manifest"
fi
stop_imgcache "$MNT"
