#!/bin/sh
# t-enospc: a cache_dir on a small, nearly full tmpfs (no quota, min_free 0,
# so the daemon meets real ENOSPC from write(2) and SQLite).  Readers of a
# template 4x the free space get the origin's bytes (serve-through); the
# serve-through is logged once, not per block; every block the index
# claims present has the origin's bytes in the data file; once space is
# freed the daemon caches again.  Needs root (mount -t tmpfs).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
[ "$(id -u)" = 0 ] || skip "needs root to mount a tmpfs"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"

SMALL=$T/small
mount_tmpfs "$SMALL" 24m || skip "cannot mount a tmpfs here"
CACHE=$SMALL/cache

MIB=1048576
make_file "$T/src/disk.img" 16
{
	global_section
	printf 'min_free = 0\n'
	printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img"
} >"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img

# Leave about 3 MiB free: the index and a few blocks fit, the template not.
start_imgcache "$T/conf" "$MNT"
stop_imgcache "$MNT"
avail=$(($(stat -f -c '%a * %S' "$SMALL")))
dd if=/dev/zero of="$SMALL/filler" bs=64K count=$(((avail - 3 * MIB) / 65536)) \
	status=none 2>/dev/null || true
note "free on the tmpfs: $(($(stat -f -c '%a * %S' "$SMALL") / 1024)) KiB"

start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/read1" bs=1M iflag=direct status=none
assert_same "full read on a full cache_dir equals the origin" \
	"$T/read1" "$T/src/disk.img"
bounded "$RANDREAD" -d -j 4 -n 200 -b 64K "$F" "$T/src/disk.img" \
	>"$T/rr.out" 2>&1 || { not_ok "random readers: $(tail -3 "$T/rr.out")"; }
ok "4 random O_DIRECT readers got the origin's bytes"
bounded dd if="$F" of="$T/read2" bs=1M status=none
assert_same "a second, buffered read equals the origin" \
	"$T/read2" "$T/src/disk.img"
lines=$(grep -c 'without caching' "$IMGCACHE_LOG" || true)
check "serve-through was logged ($lines lines)" [ "$lines" -ge 1 ]
assert_le "serve-through logged at most once a minute, not per block" \
	"$lines" 2
stop_imgcache "$MNT"

# Every claimed block equals the origin's bytes (zeros when flagged zero).
DATA=$(ls "$CACHE"/data/disk.img.* | head -n1)
sqlite3 -readonly "$CACHE/index.db" \
	'SELECT blk, flags FROM blocks ORDER BY blk' >"$T/claimed"
nclaimed=$(wc -l <"$T/claimed")
bad=0
while IFS='|' read -r blk flags; do
	dd if="$DATA" of="$T/b.cache" bs=64K skip="$blk" count=1 status=none
	dd if="$T/src/disk.img" of="$T/b.orig" bs=64K skip="$blk" count=1 \
		status=none
	if [ $((flags & 1)) = 1 ]; then
		cmp -s "$T/b.cache" /dev/zero -n "$(stat -c %s "$T/b.orig")" ||
			bad=$((bad + 1))
	else
		if ! cmp -s "$T/b.cache" "$T/b.orig"; then
			bad=$((bad + 1))
			note "block $blk differs: $(cmp "$T/b.cache" "$T/b.orig" 2>&1 | head -n 1)"
		fi
	fi
done <"$T/claimed"
note "blocks claimed present: $nclaimed of 256"
check "some blocks were cached before the disk filled" [ "$nclaimed" -gt 0 ]
check "the cache could not hold the template" [ "$nclaimed" -lt 256 ]
assert_eq "every claimed block has the origin's bytes" 0 "$bad"

# With room again, reads are cached again.
rm -f "$SMALL/filler"
start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/read3" bs=1M iflag=direct status=none
assert_same "read after freeing space equals the origin" \
	"$T/read3" "$T/src/disk.img"
stop_imgcache "$MNT"
assert_eq "with room, every block is cached" 256 \
	"$(sqlite3 -readonly "$CACHE/index.db" 'SELECT count(*) FROM blocks')"
