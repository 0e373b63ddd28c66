#!/bin/sh
# t-restart: the cache survives unmount (fusermount3 -u and SIGTERM): cached
# blocks are served after a restart without origin reads; with the origin
# file gone, cached bytes still read correctly and uncached reads fail with
# EIO within origin_timeout (3 s) + 5 s, never returning zeros.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MIB=1048576
SIZE=$((16 * MIB))
HALF=$((8 * MIB))
make_file "$T/src/disk.img" 16
cp "$T/src/disk.img" "$T/disk.copy"
head -c "$HALF" "$T/disk.copy" >"$T/half.origin"
head -c $((12 * MIB)) "$T/disk.copy" >"$T/12m.origin"
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"

global_section >"$T/conf"
# Exact cached ranges matter below: no readahead past what the test reads.
echo "readahead = 0" >>"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/omnt/disk.img" >>"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img

# --- 1. read the first half; unmount with fusermount3 -u
start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/half" bs=1M count=8 status=none
assert_same "first half equals origin (cold)" "$T/half" "$T/half.origin"
stop_imgcache "$MNT"

# --- 2. remount: the first half comes from the cache alone
from=$(($(count_reads "$OLOG") + 1))
start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/half" bs=1M count=8 status=none
assert_same "first half equals origin after restart" "$T/half" "$T/half.origin"
assert_eq "first half after restart: no origin reads of it" 0 \
	"$(reads_overlapping "$OLOG" /disk.img 0 "$HALF" "$from")"
assert_eq "first half after restart: no origin reads at all" \
	$((from - 1)) "$(count_reads "$OLOG")"
# read [8M, 12M) in this session (O_DIRECT: no kernel readahead past 12M,
# so exactly [0, 12M) is cached), then stop the daemon with SIGTERM
bounded dd if="$F" of="$T/q3" bs=1M skip=8 count=4 iflag=direct status=none
extract "$T/disk.copy" "$HALF" $((4 * MIB)) "$T/q3.origin"
assert_same "third quarter equals origin" "$T/q3" "$T/q3.origin"
stop_imgcache "$MNT" term
ok "SIGTERM unmounts and the daemon exits"

# --- 3. remount: what was read before SIGTERM is cached too
from=$(($(count_reads "$OLOG") + 1))
start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/12m" bs=1M count=12 iflag=direct status=none
assert_same "first 12 MiB equal origin after SIGTERM restart" "$T/12m" \
	"$T/12m.origin"
assert_eq "first 12 MiB after SIGTERM restart: no origin reads" 0 \
	"$(reads_overlapping "$OLOG" /disk.img 0 $((12 * MIB)) "$from")"
stop_imgcache "$MNT"

# --- 4. origin file removed: cached bytes served, misses fail with EIO
mv "$T/src/disk.img" "$T/gone.img"
start_imgcache "$T/conf" "$MNT"
assert_eq "size still reported with the origin gone" "$SIZE" \
	"$(stat -c %s "$F")"
rc=0
bounded dd if="$F" of="$T/12m" bs=1M count=12 iflag=direct status=none \
	2>"$T/dd.err" || rc=$?
if [ "$rc" = 0 ]; then
	assert_same "cached 12 MiB read (O_DIRECT) with origin gone" "$T/12m" \
		"$T/12m.origin"
else
	not_ok "cached 12 MiB read (O_DIRECT) with origin gone: $(cat "$T/dd.err")"
fi
rc=0
bounded dd if="$F" of="$T/half" bs=64K count=64 status=none \
	2>"$T/dd.err" || rc=$?
if [ "$rc" = 0 ]; then
	extract "$T/disk.copy" 0 $((4 * MIB)) "$T/q1.origin"
	assert_same "cached first 4 MiB (page cache) with origin gone" \
		"$T/half" "$T/q1.origin"
else
	not_ok "cached first 4 MiB (page cache) with origin gone: $(cat "$T/dd.err")"
fi

# miss_eio DESC DD_ARGS...: a read of an uncached block fails with EIO, in
# bounded time, and returns no bytes.
miss_eio() {
	_m_desc=$1
	shift
	_m_t0=$(now_ms)
	_m_rc=0
	timeout -k 5 60 dd if="$F" of="$T/miss" bs=64K count=1 status=none \
		"$@" 2>"$T/miss.err" || _m_rc=$?
	_m_ms=$(($(now_ms) - _m_t0))
	if [ "$_m_rc" = 0 ]; then
		not_ok "$_m_desc: read succeeded with the origin gone"
	elif grep -q 'Input/output error' "$T/miss.err"; then
		ok "$_m_desc fails with EIO"
	else
		not_ok "$_m_desc: status $_m_rc, not EIO: $(head -n 1 "$T/miss.err")"
	fi
	assert_le "$_m_desc fails within origin_timeout + 5 s (ms)" "$_m_ms" 8000
	assert_eq "$_m_desc returns no bytes" 0 "$(stat -c %s "$T/miss")"
}
miss_eio "O_DIRECT read of an uncached block" skip=224 iflag=direct
miss_eio "page-cache read of an uncached block" skip=230
miss_eio "read straddling cached and uncached blocks" skip=$((12 * MIB - 4096)) \
	iflag=direct,skip_bytes

rc=0
timeout -k 5 60 cat "$F" >"$T/all" 2>"$T/cat.err" || rc=$?
if [ "$rc" != 0 ]; then
	ok "cat of the whole file fails (status $rc)"
else
	not_ok "cat of the whole file succeeded with the origin gone"
fi
got=$(stat -c %s "$T/all")
extract "$T/disk.copy" 0 "$got" "$T/all.origin"
assert_le "cat returned no more than the cached 12 MiB" "$got" $((12 * MIB))
assert_same "what cat returned is the origin's prefix (no zeros)" "$T/all" \
	"$T/all.origin"
assert_eq "size unchanged after failed reads" "$SIZE" "$(stat -c %s "$F")"
bounded dd if="$F" of="$T/half" bs=1M count=8 iflag=direct status=none
assert_same "cached half still reads correctly after the failures" \
	"$T/half" "$T/half.origin"

stop_imgcache "$MNT"
ok "unmount works with the origin gone"
mv "$T/gone.img" "$T/src/disk.img"
stop_originfs "$T/omnt"
