#!/bin/sh
# t-trace: `imgcache-pin --record SECONDS --trace` writes the ordered trace
# (imgcache-trace v1) of the reads readers of a template were served: every
# read in arrival order, with its time, offset and length, not merged, not
# sorted, not rounded to blocks.  A reader (test/bench/replay, O_DIRECT)
# does known reads in a known, unsorted order, some adjacent, one repeated,
# none block-aligned in length; a pre-warm of another range of the same
# template runs meanwhile and must not appear.  The trace then replays on a
# fresh cache with the origin's bytes.  Without --trace the same verb still
# writes the merged profile.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
PIN=$top_builddir/tools/imgcache-pin
REPLAY=$top_builddir/test/bench/replay
[ -x "$PIN" ] || fail "$PIN is not built (run make)"
[ -x "$REPLAY" ] || fail "$REPLAY is not built (run make check)"

MIB=1048576
SIZE=$((16 * MIB))
make_file_bytes "$T/src/boot.img" "$SIZE"
{
	global_section
	printf '\n[template boot.img]\norigin = %s\n' "$T/src/boot.img"
} >"$T/conf"
start_imgcache "$T/conf" "$T/mnt"
wait_for 10 test -S "$CACHE/ctl.sock" || fail "no control socket"
F=$T/mnt/boot.img

# The "boot": O_DIRECT reads of at most 128 KiB (the kernel hands FUSE an
# O_DIRECT read as one request up to max_read), 512-aligned, in this order.
cat >"$T/boot.trace" <<TR
# imgcache-trace v1
0 $((3 * MIB)) 4096
0 0 512
0 512 512
0 1024 7168
0 $((9 * MIB + 512)) 131072
0 $((3 * MIB)) 4096
0 $((2 * MIB)) 65536
0 $((2 * MIB + 65536)) 65536
0 $((15 * MIB + 1024)) 1536
TR
grep -v '^#' "$T/boot.trace" | awk '{ print $2, $3 }' >"$T/expect"

rc=0
bounded "$PIN" --cache-dir "$CACHE" --record 4 --trace --output "$T/rec.trace" \
	boot.img >"$T/rec.out" 2>&1 &
REC=$!
wait_for 10 grep -q "recording a trace of the reads of boot.img" "$IMGCACHE_LOG" ||
	fail "the recording did not start"
# A pre-warm of 5-7 MiB meanwhile: the cache's own reads, not a reader's.
bounded "$PIN" --cache-dir "$CACHE" --wait boot.img 5M-7M >"$T/pin.out" 2>&1 ||
	not_ok "pin --wait 5M-7M: $(cat "$T/pin.out")"
bounded "$REPLAY" -c "$T/src/boot.img" "$F" "$T/boot.trace" >"$T/r1.out" \
	2>&1 || not_ok "the reader failed: $(cat "$T/r1.out")"
wait "$REC" || rc=$?
assert_eq "--record --trace exits 0 ($(cat "$T/rec.out"))" 0 "$rc"
check "no temporary file left" test ! -e "$T/rec.trace.tmp"
sed 's/^/# /' "$T/rec.trace"

assert_eq "first line is the format's" "# imgcache-trace v1" \
	"$(head -n 1 "$T/rec.trace")"
check "header names the template, its size and block size" grep -qx \
	"# template boot.img size $SIZE block 65536" "$T/rec.trace"
grep -v '^#' "$T/rec.trace" >"$T/body"
check "every line is T_US OFFSET LENGTH" sh -c \
	"! grep -Evq '^[0-9]+ [0-9]+ [0-9]+\$' '$T/body'"
awk '{ print $2, $3 }' "$T/body" >"$T/got"
if cmp -s "$T/got" "$T/expect"; then
	ok "the trace holds exactly the reads, in their order and sizes"
else
	not_ok "trace differs from the reads done: $(diff "$T/expect" "$T/got" | tr '\n' ';')"
fi
assert_eq "the first read is at time 0" 0 "$(awk 'NR == 1 { print $1 }' "$T/body")"
check "times never go backwards" awk \
	'NR > 1 && $1 < p { exit 1 } { p = $1 }' "$T/body"

# Without --trace: the merged, sorted profile, as before.
bounded "$PIN" --cache-dir "$CACHE" --record 3 --output "$T/rec.prof" \
	boot.img >"$T/prof.out" 2>&1 &
REC=$!
wait_for 10 sh -c "[ \$(grep -c 'recording reads of boot.img' '$IMGCACHE_LOG') -ge 1 ]" ||
	fail "the profile recording did not start"
bounded "$REPLAY" "$F" "$T/boot.trace" >"$T/r2.out" 2>&1 ||
	not_ok "the reader failed: $(cat "$T/r2.out")"
rc=0
wait "$REC" || rc=$?
assert_eq "--record without --trace exits 0" 0 "$rc"
check "the profile has no trace header" sh -c \
	"! grep -q 'imgcache-trace' '$T/rec.prof'"
# 0+512, 512+512 and 1024+7168 merge into one range 0+8192.
check "the profile is merged" grep -Eq '^0[[:space:]]+8192$' "$T/rec.prof"
stop_imgcache "$T/mnt"

# The recorded trace replays on a fresh cache with the origin's bytes.
CACHE=$T/cache2
{
	global_section
	printf '\n[template boot.img]\norigin = %s\n' "$T/src/boot.img"
} >"$T/conf2"
start_imgcache "$T/conf2" "$T/mnt2"
rc=0
bounded "$REPLAY" -j 4 -c "$T/src/boot.img" "$T/mnt2/boot.img" "$T/rec.trace" \
	>"$T/r3.out" 2>&1 || rc=$?
assert_eq "the recorded trace replays, 4 readers, origin's bytes ($(tr '\n' ';' <"$T/r3.out"))" 0 "$rc"
stop_imgcache "$T/mnt2"
