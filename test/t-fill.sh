#!/bin/sh
# t-fill: how fills reach the data file.  By default (direct_fill = yes)
# they are written O_DIRECT, so a cold read leaves the data file out of the
# page cache, and its readers are served from the staged fills rather than
# by reading the data file back; direct_fill = no writes through the page
# cache; data_direct_io = yes also reads the cache O_DIRECT.  Every read is
# compared with the origin, cold and warm (after a restart and, as root,
# with the page cache dropped).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
command -v fincore >/dev/null 2>&1 || skip "fincore (util-linux) not installed"

SIZE=$((24 * 1048576 + 12345)) # EOF not 4K-aligned: a buffered tail
make_file_bytes "$T/src/disk.img" "$SIZE"
MNT=$T/mnt
F=$MNT/disk.img
DATA=$CACHE/data/disk.img.1

# resident DATAFILE: bytes of it in the page cache.
resident() {
	bounded fincore --bytes --noheadings --output RES "$1" | tr -d ' '
}
origin_bytes() {
	getfattr --absolute-names --only-values -n user.imgcache.origin_bytes "$F"
}
# conf EXTRA: a config with EXTRA in [global].
conf() {
	{
		global_section
		printf '%b' "$1"
		printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img"
	} >"$T/conf"
}
drop_caches() {
	if [ "$(id -u)" = 0 ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}
# cold_read NAME: empty cache, sequential read, compared; sets RES.
cold_read() {
	rm -rf "$CACHE"
	start_imgcache "$T/conf" "$MNT"
	bounded dd if="$F" of="$T/out" bs=1M status=none
	assert_same "$1: cold sequential read equals origin" "$T/out" \
		"$T/src/disk.img"
	RES=$(resident "$DATA")
	STORED=$(data_bytes "$DATA")
	# Every block is in the data file (random bytes: no holes).
	check "$1: every block stored ($STORED bytes)" \
		test "$STORED" -ge $((SIZE - 4096))
}
# warm_read NAME: restart, drop caches, read again: no origin bytes.
warm_read() {
	stop_imgcache "$MNT"
	drop_caches
	start_imgcache "$T/conf" "$MNT"
	before=$(origin_bytes)
	bounded dd if="$F" of="$T/out" bs=1M status=none
	assert_same "$1: warm read after a restart equals origin" "$T/out" \
		"$T/src/disk.img"
	assert_eq "$1: the warm read fetched nothing" "$before" "$(origin_bytes)"
	check "$1: no block failed its check" \
		sh -c "! grep -q discarding '$IMGCACHE_LOG'"
}

# --- default: direct_fill = yes
conf ''
cold_read "direct_fill"
# A stage miss would read the block back through the page cache; only the
# short tail page is written through it.  Allow a quarter for slow runs.
check "direct_fill: data file stays out of the page cache ($RES of $SIZE bytes resident)" \
	test "$RES" -le $((SIZE / 4))
if bounded "$RANDREAD" -n 500 -j 4 -s 21 "$F" "$T/src/disk.img" \
	>"$T/rr.out" 2>&1; then
	ok "direct_fill: randread -j 4: $(tail -n 1 "$T/rr.out")"
else
	not_ok "direct_fill: randread -j 4: $(head -n 1 "$T/rr.out")"
fi
warm_read "direct_fill"
stop_imgcache "$MNT"

# Concurrent cold readers of one template share fills (and the stage).
rm -rf "$CACHE"
start_imgcache "$T/conf" "$MNT"
pids=
for i in 1 2 3 4; do
	bounded dd if="$F" of="$T/out.$i" bs=1M iflag=direct status=none &
	pids="$pids $!"
done
for p in $pids; do wait "$p" || true; done
for i in 1 2 3 4; do
	assert_same "4 concurrent cold O_DIRECT readers: reader $i" \
		"$T/out.$i" "$T/src/disk.img"
done
stop_imgcache "$MNT"

# --- direct_fill = no: fills go through the page cache
conf 'direct_fill = no\n'
drop_caches
cold_read "direct_fill = no"
check "direct_fill = no: the data file is in the page cache ($RES bytes resident)" \
	test "$RES" -ge $((SIZE / 2))
warm_read "direct_fill = no"
stop_imgcache "$MNT"

# --- data_direct_io = yes: the cache's reads bypass the page cache too
conf 'data_direct_io = yes\n'
drop_caches
cold_read "data_direct_io"
warm_read "data_direct_io"
RES=$(resident "$DATA")
check "data_direct_io: warm reads leave the data file out of the page cache ($RES bytes resident)" \
	test "$RES" -le 65536
stop_imgcache "$MNT"
