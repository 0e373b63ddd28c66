#!/bin/sh
# t-random: thousands of random reads of random sizes (crossing block
# boundaries, EOF and the short last block) equal the origin; a sparse 5 GiB
# template reads correctly past 4 GiB.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

SIZE=$((24 * 1048576 + 12345)) # short last block
make_file_bytes "$T/src/disk.img" "$SIZE"

# Sparse 5 GiB origin with random chunks around interesting offsets.
BIG=$T/src/big.img
G=1073741824
BIGSIZE=$((5 * G))
truncate -s "$BIGSIZE" "$BIG"
CHUNKS="$((2 * G - 1000)):70000 $((4 * G - 30000)):100000 $((4 * G)):65536
$((4 * G + 3 * BS - 100)):200 $((4 * G + 512 * 1048576 + 7)):300000
$((BIGSIZE - 200000)):100000 $((BIGSIZE - 70000)):70000"
for c in $CHUNKS; do
	write_at "$BIG" "${c%%:*}" "${c#*:}"
done
assert_eq "sparse origin is 5 GiB" "$BIGSIZE" "$(stat -c %s "$BIG")"

global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template disk.img]
origin = $T/src/disk.img

[template big.img]
origin = $BIG
EOF

MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"

# randread DESC ARGS...: run the checker, report its summary line.
randread() {
	_rr_desc=$1
	shift
	if bounded "$RANDREAD" "$@" >"$T/rr.out" 2>&1; then
		ok "$_rr_desc: $(tail -n 1 "$T/rr.out")"
	else
		not_ok "$_rr_desc: $(grep -v '^randread: [0-9]* reads' "$T/rr.out" |
			head -n 1) [$(tail -n 1 "$T/rr.out")]"
	fi
}

randread "2000 random reads (cold/warm mix)" -n 2000 -s 1 "$MNT/disk.img" \
	"$T/src/disk.img"
randread "4 threads x 1000 reads up to 256K" -n 1000 -j 4 -s 2 -b 256K \
	"$MNT/disk.img" "$T/src/disk.img"
randread "1000 small reads up to 4K" -n 1000 -s 3 -b 4K "$MNT/disk.img" \
	"$T/src/disk.img"
assert_same "full read after random reads equals origin" "$MNT/disk.img" \
	"$T/src/disk.img"

# --- past 4 GiB
assert_eq "5 GiB template has the origin's size" "$BIGSIZE" \
	"$(stat -c %s "$MNT/big.img")"
for c in $CHUNKS; do
	off=$((${c%%:*} - 5000))
	len=$((${c#*:} + 10000))
	extract "$MNT/big.img" "$off" "$len" "$T/chunk.mnt"
	extract "$BIG" "$off" "$len" "$T/chunk.origin"
	assert_same "big.img bytes $off+$len equal origin" "$T/chunk.mnt" \
		"$T/chunk.origin"
done
extract "$MNT/big.img" $((BIGSIZE - 1000)) 100000 "$T/end.mnt"
assert_eq "read across EOF of the 5 GiB file returns 1000 bytes" 1000 \
	"$(stat -c %s "$T/end.mnt")"
randread "400 random reads of the 5 GiB file" -n 400 -s 4 -b 256K \
	"$MNT/big.img" "$BIG"
randread "200 O_DIRECT reads of the 5 GiB file" -n 200 -s 5 -b 256K -d \
	"$MNT/big.img" "$BIG"

stop_imgcache "$MNT"

# Again from the persistent cache after a restart.
start_imgcache "$T/conf" "$MNT"
randread "2000 random reads after restart" -n 2000 -s 6 "$MNT/disk.img" \
	"$T/src/disk.img"
randread "400 reads of the 5 GiB file after restart" -n 400 -s 4 -b 256K \
	"$MNT/big.img" "$BIG"
stop_imgcache "$MNT"
