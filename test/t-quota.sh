#!/bin/sh
# t-quota: a template's data file stays within its quota (plus the blocks
# being filled at that moment) under 16 parallel random readers on a
# template 8x its quota; every byte read equals the origin; recently read
# blocks survive the churn (LRU); all-zero blocks cost no disk.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MIB=1048576
QUOTA=$((4 * MIB))
make_file "$T/src/disk.img" 32
# 8 MiB of zeros, then 1 MiB of data.
head -c $((8 * MIB)) /dev/zero >"$T/src/zero.img"
head -c "$MIB" /dev/urandom >>"$T/src/zero.img"
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"
{
	global_section
	printf '\n[template disk.img]\norigin = %s\nquota = 4M\n' "$T/omnt/disk.img"
	printf '\n[template zero.img]\norigin = %s\n' "$T/omnt/zero.img"
} >"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
DATA=$(ls "$CACHE"/data/disk.img.*)

# --- 1. quota bound, sampled while 16 readers churn the cache
bounded "$RANDREAD" -d -j 16 -n 150 -b 262144 -s 7 "$MNT/disk.img" \
	"$T/src/disk.img" >"$T/rr.out" 2>&1 &
RR=$!
max=0
samples=0
while kill -0 "$RR" 2>/dev/null; do
	a=$(($(stat -c %b "$DATA") * 512))
	[ "$a" -gt "$max" ] && max=$a
	samples=$((samples + 1))
done
if wait "$RR"; then ok "16 readers: $(cat "$T/rr.out")"; else
	not_ok "16 readers: $(cat "$T/rr.out")"
fi
note "$samples samples of the data file's allocation, max $max bytes"
# In flight: up to 16 readers x (256 KiB + one block of misalignment).
assert_le "allocation within quota + in-flight fills" "$max" \
	$((QUOTA + 16 * (262144 + 65536)))
a=$(data_bytes "$DATA")
assert_le "data at rest within quota" "$a" "$QUOTA"
evicted=$(sqlite3 "$CACHE/index.db" \
	"select coalesce(sum(blocks),0) from events where kind='evict'" 2>/dev/null ||
	echo 0)
note "evicted blocks recorded so far: $evicted (committed in batches)"

# --- 2. LRU: the most recently read MiB survives further churn
bounded dd if="$MNT/disk.img" of=/dev/null bs=1M count=1 iflag=direct status=none
bounded dd if="$MNT/disk.img" of=/dev/null bs=1M skip=10 count=2 iflag=direct \
	status=none
bounded dd if="$MNT/disk.img" of=/dev/null bs=1M count=1 iflag=direct status=none
from=$(($(count_reads "$OLOG") + 1))
bounded dd if="$MNT/disk.img" of="$T/first" bs=1M count=1 iflag=direct status=none
assert_eq "recently read first MiB still cached" 0 \
	"$(reads_overlapping "$OLOG" /disk.img 0 "$MIB" "$from")"
extract "$T/src/disk.img" 0 "$MIB" "$T/first.origin"
assert_same "first MiB equals origin" "$T/first" "$T/first.origin"

# --- 3. zero blocks are holes
bounded cat "$MNT/zero.img" >"$T/zero.read"
assert_same "zero template equals origin" "$T/zero.read" "$T/src/zero.img"
ZDATA=$(ls "$CACHE"/data/zero.img.*)
assert_le "8 MiB of zeros use no disk" "$(($(stat -c %b "$ZDATA") * 512))" \
	$((MIB + 65536))
assert_eq "cached_bytes counts only the data" "$MIB" \
	"$(getfattr --only-values -n user.imgcache.cached_bytes "$MNT/zero.img" 2>/dev/null)"
stop_imgcache "$MNT"
assert_eq "the index records the zero blocks as zero" 128 \
	"$(sqlite3 "$CACHE/index.db" "select count(*) from blocks b join templates t on t.id=b.tid where t.name='zero.img' and b.flags & 1")"
