#!/bin/sh
# t-dir-away: a [directory] origin that cannot be listed -- missing (an NFS
# share down), or empty (its mount point not mounted yet) -- keeps its
# known templates visible and served from the cache, at start and while
# running (SIGHUP, and the background re-listing):
#  - the cached bytes are exact (cmp against saved copies), pinned blocks
#    included; an uncached read fails with EIO within origin_timeout;
#  - a warning says why; when the directory is back, a new file appears
#    without a reload and the templates keep their generation;
#  - a file removed from a directory that still lists files goes, and does
#    not come back when the directory is away afterwards;
#  - a share that hangs (originfs stopped, as a hard NFS mount) delays a
#    start or a reload by about connect_timeout, not for ever.
# The share is a bind mount of $S on $N (the "NFS mount"); needs root.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
[ "$(id -u)" = 0 ] || skip "needs root (bind mounts)"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"

S=$T/share
N=$T/nfs
make_file "$S/a.img" 4
make_file "$S/b.img" 2
cp "$S/a.img" "$T/a.orig"
cp "$S/b.img" "$T/b.orig"
mkdir -p "$N"
mount --bind "$S" "$N" 2>/dev/null || skip "cannot bind-mount here"
echo "$N" >>"$T/.tmpfs" # lib.sh's EXIT trap detaches it
share_up() { mkdir -p "$N" && mount --bind "$S" "$N"; }
share_down() { umount "$N"; }

{
	global_section
	printf 'readahead = 0\n\n[directory d]\norigin = %s\npin = 0-256K\n' "$N"
} >"$T/conf"
MNT=$T/mnt

# shellcheck disable=SC2012 # the mount's readdir is what is tested
listing() { LC_ALL=C ls "$MNT" | tr '\n' ' '; }
# shellcheck disable=SC2012 # plain names
gens() { (cd "$CACHE/data" && LC_ALL=C ls | tr '\n' ' '); }
pinned() {
	sqlite3 "file:$CACHE/index.db?mode=ro" \
		"SELECT (SELECT count(*) FROM pins) || ':' ||
		        (SELECT count(*) FROM blocks)" 2>/dev/null
}


# cached_ok WHEN: the cached bytes of a.img (all) and b.img (first 1M) are
# exact; an uncached block of b.img fails with EIO within origin_timeout.
cached_ok() {
	case "$(listing)" in
	"a.img b.img "*) ok "$1: a.img and b.img listed" ;;
	*) not_ok "$1: a.img and b.img listed (got '$(listing)')" ;;
	esac
	assert_same "$1: a.img reads its saved copy" "$MNT/a.img" "$T/a.orig"
	extract "$MNT/b.img" 0 1048576 "$T/b.head"
	extract "$T/b.orig" 0 1048576 "$T/b.orig.head"
	assert_same "$1: b.img's cached first 1M (pinned 256K in it)" \
		"$T/b.head" "$T/b.orig.head"
	t0=$(now_ms)
	rc=0
	bounded dd if="$MNT/b.img" of=/dev/null bs=64K skip=24 count=1 \
		iflag=direct status=none 2>"$T/eio.err" || rc=$?
	t1=$(now_ms)
	if [ "$rc" != 0 ] && grep -q 'Input/output error' "$T/eio.err"; then
		ok "$1: an uncached block of b.img fails with EIO"
	else
		not_ok "$1: uncached block: expected EIO, got status $rc"
	fi
	assert_le "$1: ... within origin_timeout (3 s) + 2 s" $((t1 - t0)) 5000
}

# --- 0. the share is up: cache a.img whole, b.img's first 1M
start_imgcache "$T/conf" "$MNT"
assert_eq "up: both files listed" "a.img b.img " "$(listing)"
assert_same "up: a.img reads the origin" "$MNT/a.img" "$T/a.orig"
extract "$MNT/b.img" 0 1048576 "$T/b.head"
stop_imgcache "$MNT"
GENS=$(gens)
assert_eq "up: one generation each" "a.img.1 b.img.1 " "$GENS"
PINNED=$(pinned)
case "$PINNED" in
0:* | "") not_ok "up: pins in the index (got '$PINNED')" ;;
*) ok "up: pins and blocks in the index ($PINNED)" ;;
esac

# --- 1. missing at start
share_down
rmdir "$N"
start_imgcache "$T/conf" "$MNT"
check "missing at start: a warning says so" \
	grep -q "directory d: cannot list.*serving the 2 templates" "$IMGCACHE_LOG"
cached_ok "missing at start"
assert_eq "missing at start: the index keeps every pin and block row" \
	"$PINNED" "$(pinned)"

# --- 2. back while running: the background re-listing finds a new file
make_file "$S/c.img" 1
share_up
if wait_for 45 test -e "$MNT/c.img"; then
	ok "back: c.img appears without a reload"
else
	not_ok "back: c.img did not appear within 45 s"
fi
check "back: the log says the directory lists files again" \
	grep -q "directory d: .* lists 3 files again" "$IMGCACHE_LOG"
assert_same "back: c.img reads the origin" "$MNT/c.img" "$S/c.img"
assert_same "back: a.img reads the origin" "$MNT/a.img" "$T/a.orig"
assert_eq "back: a.img and b.img keep their generation" \
	"a.img.1 b.img.1 c.img.1 " "$(gens)"

# --- 3. missing while running: SIGHUP
cp "$S/c.img" "$T/c.orig"
share_down
rmdir "$N"
reload_imgcache
assert_eq "missing at SIGHUP: all three still listed" "a.img b.img c.img " \
	"$(listing)"
check "missing at SIGHUP: a warning says so" \
	sh -c "grep 'directory d: cannot list' '$IMGCACHE_LOG' | wc -l | grep -qx 2"
cached_ok "missing at SIGHUP"
assert_same "missing at SIGHUP: c.img reads its saved copy" "$MNT/c.img" \
	"$T/c.orig"

# --- 4. empty while running (mount point there, share not mounted)
mkdir "$N"
reload_imgcache
assert_eq "empty at SIGHUP: all three still listed" "a.img b.img c.img " \
	"$(listing)"
check "empty at SIGHUP: a warning says the directory lists no files" \
	grep -q "directory d: .* lists no files, but the cache knows 3" \
	"$IMGCACHE_LOG"
cached_ok "empty at SIGHUP"

# --- 5. back, then a file removed from the listed directory goes
mount --bind "$S" "$N"
reload_imgcache
assert_eq "back at SIGHUP: generations kept" "a.img.1 b.img.1 c.img.1 " \
	"$(gens)"
rm "$S/b.img"
reload_imgcache
assert_eq "b.img removed from the share: gone from the mount" "a.img c.img " \
	"$(listing)"
stop_imgcache "$MNT"

# --- 6. empty at start: b.img, removed, stays gone
share_down
start_imgcache "$T/conf" "$MNT"
assert_eq "empty at start: a.img and c.img listed" "a.img c.img " "$(listing)"
check "empty at start: a warning says the directory lists no files" \
	grep -q "directory d: .* lists no files, but the cache knows 2" \
	"$IMGCACHE_LOG"
assert_same "empty at start: a.img reads its saved copy" "$MNT/a.img" \
	"$T/a.orig"
assert_same "empty at start: c.img reads its saved copy" "$MNT/c.img" \
	"$T/c.orig"
# Back with b.img again: it returns (the directory lists it).
cp "$T/b.orig" "$S/b.img"
share_up
reload_imgcache
assert_eq "back at SIGHUP: b.img listed again" "a.img b.img c.img " \
	"$(listing)"
assert_same "back at SIGHUP: b.img reads the origin" "$MNT/b.img" "$T/b.orig"
stop_imgcache "$MNT"

# --- 7. a share that hangs (hard NFS): originfs, then SIGSTOP
CACHE=$T/cache-h
start_originfs "$S" "$T/origin.log" "$T/omnt"
OPID=$ORIGINFS_PID
{
	global_section
	printf 'connect_timeout = 1s

[directory h]
origin = %s
' "$T/omnt"
} >"$T/conf-h"
start_imgcache "$T/conf-h" "$MNT"
assert_same "hung share, up: a.img reads the origin" "$MNT/a.img" "$T/a.orig"
stop_imgcache "$MNT"
kill -STOP "$OPID"
t0=$(now_ms)
start_imgcache "$T/conf-h" "$MNT"
t1=$(now_ms)
assert_le "hung at start: mounted within 8 s" $((t1 - t0)) 8000
assert_eq "hung at start: the files listed last are listed" \
	"a.img b.img c.img " "$(listing)"
check "hung at start: a warning says so" \
	grep -q "directory h: cannot list.*serving the 3 templates" "$IMGCACHE_LOG"
assert_same "hung at start: a.img reads its saved copy" "$MNT/a.img" \
	"$T/a.orig"
t0=$(now_ms)
reload_imgcache
t1=$(now_ms)
assert_le "hung at SIGHUP: the reload ends within 5 s" $((t1 - t0)) 5000
assert_eq "hung at SIGHUP: still listed" "a.img b.img c.img " "$(listing)"
kill -CONT "$OPID"
stop_imgcache "$MNT"
