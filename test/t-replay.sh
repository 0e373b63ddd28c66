#!/bin/sh
# t-replay: test/bench/replay (the make bench-storm replayer) replays an
# imgcache-trace v1 through a mount: N concurrent replayers each read every
# range in the trace's order (O_DIRECT where aligned, buffered where not),
# with the origin's bytes (-c), one latency per read (-l); it fails naming
# the range on a short read past the end of the file, refuses a file that is
# not a trace, and fails when the bytes differ from the reference.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
REPLAY=$top_builddir/test/bench/replay
[ -x "$REPLAY" ] || fail "$REPLAY is not built (run make check)"

SIZE=$((6 * 1048576 + 4321)) # EOF not 512-aligned
make_file_bytes "$T/src/disk.img" "$SIZE"
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img" >>"$T/conf"
start_imgcache "$T/conf" "$T/mnt"
F=$T/mnt/disk.img

# Out of order, mixed sizes, two unaligned (buffered) ranges, one that ends
# at EOF exactly, one range read twice.
cat >"$T/trace" <<TR
# imgcache-trace v1
# template disk.img size $SIZE block 65536
0 4194304 131072
15 0 4096
40 1000 3000
41 65536 1048576
90 $((SIZE - 4321)) 4321
91 512 512
120 4194304 131072
TR
N_RANGES=7
BYTES=$((131072 + 4096 + 3000 + 1048576 + 4321 + 512 + 131072))

rc=0
bounded "$REPLAY" -j 3 -l "$T/lat" -c "$T/src/disk.img" "$F" "$T/trace" \
	>"$T/out" 2>"$T/err" || rc=$?
assert_eq "replay -j 3 exits 0" 0 "$rc"
[ "$rc" = 0 ] || show_log "$T/err"
sed 's/^/# /' "$T/out"
for i in 0 1 2; do
	check "replayer $i read every range in full" grep -Eq \
		"^replayer $i elapsed_us [0-9]+ bytes $BYTES reads $N_RANGES\$" "$T/out"
done
check "median and p99 line" grep -Eq '^median_us [0-9]+ p99_us [0-9]+$' "$T/out"
assert_eq "one latency per read" $((3 * N_RANGES)) "$(wc -l <"$T/lat" | tr -d ' ')"
check "latencies are numbers" sh -c "! grep -qv '^[0-9][0-9]*\$' '$T/lat'"

# Buffered mode reads the same.
rc=0
bounded "$REPLAY" -b -c "$T/src/disk.img" "$F" "$T/trace" >"$T/out" \
	2>"$T/err" || rc=$?
assert_eq "replay -b exits 0" 0 "$rc"
check "replay -b read every range" grep -Eq \
	"^replayer 0 elapsed_us [0-9]+ bytes $BYTES reads $N_RANGES\$" "$T/out"

# A range past EOF: a short read, exit 1, the range named, the replayer
# stopped there (2 ranges done).
printf '# imgcache-trace v1\n0 0 65536\n5 131072 4096\n9 %s 65536\n12 0 4096\n' \
	$((SIZE - 4321)) >"$T/short"
rc=0
bounded "$REPLAY" -j 2 "$F" "$T/short" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "replay of a read past EOF exits 1" 1 "$rc"
check "the short range is named" grep -q \
	"range 3 (offset $((SIZE - 4321)) length 65536.*short read" "$T/err"
check "the replayer stopped at the short read" grep -Eq \
	"^replayer 0 elapsed_us [0-9]+ bytes $((65536 + 4096 + 4321)) reads 2\$" "$T/out"

# Bytes that differ from the reference fail.
cp "$T/src/disk.img" "$T/other.img"
printf 'X' | dd of="$T/other.img" bs=1 seek=70000 conv=notrunc status=none
rc=0
bounded "$REPLAY" -c "$T/other.img" "$F" "$T/trace" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "replay -c against different bytes exits 1" 1 "$rc"
check "the differing offset is named" grep -q \
	"range 4 (offset 65536 length 1048576): bytes differ from REF at offset 70000" "$T/err"

# Not a trace: refused with the line named.
printf '0 0 4096\n' >"$T/bad"
rc=0
"$REPLAY" "$F" "$T/bad" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "a file without the header is refused" 2 "$rc"
check "the refusal names the header" grep -q "bad:1: not an imgcache trace" "$T/err"
printf '# imgcache-trace v1\n0 0 4096\n5 12x 4096\n' >"$T/bad"
rc=0
"$REPLAY" "$F" "$T/bad" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "a bad line is refused" 2 "$rc"
check "the refusal names the line" grep -q "bad:3: expected" "$T/err"

stop_imgcache "$T/mnt"
