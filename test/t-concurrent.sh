#!/bin/sh
# t-concurrent: concurrent readers of a cold template get the right bytes,
# no block is fetched from the origin twice (single-flight), and a run of
# adjacent missing blocks is fetched in one origin request (coalescing).
# The origin is served by originfs, which logs every read request.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

make_file "$T/src/seq.img" 16
BSIZE=$((24 * 1048576 + 4321))
make_file_bytes "$T/src/b.img" "$BSIZE"
make_file "$T/src/c.img" 16
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"

global_section >"$T/conf"
for f in seq.img b.img c.img; do
	printf '\n[template %s]\norigin = %s\n' "$f" "$T/omnt/$f" >>"$T/conf"
done
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
note "origin requests at mount: $(count_reads "$OLOG")"

# --- coalescing: a cold sequential cat of a 16 MiB file
bounded cat "$MNT/seq.img" >"$T/seq.out"
assert_same "cold cat equals origin" "$T/seq.out" "$T/src/seq.img"
blocks=$((16 * 1048576 / BS))
reqs=$(count_reads "$OLOG" /seq.img)
assert_le "cold cat of $blocks blocks: origin requests <= blocks/2" \
	"$reqs" $((blocks / 2))
assert_le "cold cat: origin bytes <= size + 8 blocks" \
	"$(count_bytes "$OLOG" /seq.img)" $((16 * 1048576 + 8 * BS))
assert_eq "cold cat: no block fetched twice (bytes refetched)" 0 \
	"$(refetched_bytes "$OLOG" /seq.img)"

# --- single-flight: 8 concurrent O_DIRECT readers of one cold template
pids=""
for i in 1 2 3 4 5 6 7 8; do
	bounded dd if="$MNT/b.img" of="$T/b.out.$i" bs=1M iflag=direct \
		status=none 2>"$T/b.err.$i" &
	pids="$pids $!"
done
i=0
for p in $pids; do
	i=$((i + 1))
	rc=0
	wait "$p" || rc=$?
	if [ "$rc" = 0 ]; then
		assert_same "concurrent O_DIRECT reader $i equals origin" \
			"$T/b.out.$i" "$T/src/b.img"
	else
		not_ok "concurrent O_DIRECT reader $i failed (status $rc):" \
			"$(head -n 1 "$T/b.err.$i")"
	fi
done
assert_le "8 readers: origin bytes <= size + 8 blocks" \
	"$(count_bytes "$OLOG" /b.img)" $((BSIZE + 8 * BS))
assert_eq "8 readers: no block fetched twice (bytes refetched)" 0 \
	"$(refetched_bytes "$OLOG" /b.img)"
bblocks=$(((BSIZE + BS - 1) / BS))
assert_le "8 readers: origin requests <= blocks/2" \
	"$(count_reads "$OLOG" /b.img)" $((bblocks / 2))

# --- 8 threads of random reads, page cache and O_DIRECT, on a cold template
for mode in "" -d; do
	if bounded "$RANDREAD" -n 300 -j 8 -s 7 $mode "$MNT/c.img" \
		"$T/src/c.img" >"$T/rr.out" 2>&1; then
		ok "randread -j 8 $mode: $(tail -n 1 "$T/rr.out")"
	else
		not_ok "randread -j 8 $mode: $(head -n 1 "$T/rr.out")"
	fi
done
assert_eq "random readers: no block fetched twice (bytes refetched)" 0 \
	"$(refetched_bytes "$OLOG" /c.img)"
assert_le "random readers: origin bytes <= size + 8 blocks" \
	"$(count_bytes "$OLOG" /c.img)" $((16 * 1048576 + 8 * BS))

# --- warm: everything read again, nothing more from the origin
n0=$(count_reads "$OLOG")
for f in seq.img b.img; do
	assert_same "warm $f equals origin" "$MNT/$f" "$T/src/$f"
done
bounded "$RANDREAD" -n 300 -j 8 -s 7 -d "$MNT/c.img" "$T/src/c.img" \
	>"$T/rr.out" 2>&1 || not_ok "warm randread: $(head -n 1 "$T/rr.out")"
assert_eq "warm re-reads cause no origin requests" "$n0" "$(count_reads "$OLOG")"

stop_imgcache "$MNT"
stop_originfs "$T/omnt"
