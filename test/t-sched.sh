#!/bin/sh
# t-sched: the fetch scheduler (include/ic-sched.h) seen from the origin's
# side.  One HTTP origin (test/faultsrv.py, lag/: every ranged GET waits
# 1 s before it is answered) serves three templates; origin_connections
# = 2.  faultsrv's --trace notes when each request arrives and ends, and
# how many were in flight, so every figure below is the server's own:
#  (a) never more than 2 requests in flight;
#  (b) a pre-warm of a.img (24 chunks of 1 MiB, --parallel 16: 14
#      fetches waiting) keeps the host busy while a reader reads 6 blocks
#      of b.img: while each of the reader's requests waits for a slot
#      (from the daemon's debug line, on the trace's clock), at most 2
#      a.img requests start (those in flight when it asked), not the
#      warm's queue;
#  (d) the reader's sequential reads ask for readahead, which never gets
#      a slot while others wait: no readahead-sized request of b.img
#      before the warm's last one starts, each block the reader reads is
#      its own request, and user.imgcache.readahead_skipped counts the
#      skips;
#  (c) imgcache-pin --rate 1M: the warm's requests, from the server's
#      timestamps, come at no more than 1.5 MiB/s beyond its first 2 MiB
#      (a second's burst and one chunk taken on credit).
#  (e) a pre-warm that times out waiting for a slot is no origin failure:
#      with origin_connections = 1, origin_timeout = 10 s and three readers
#      of e.img keeping a demand read always waiting, a warm of d.img
#      never gets the slot; once it has given up, a read of the same
#      block goes to the origin and returns its bytes (no failed-fill
#      memory turns it into EIO), and the index has no fill error of
#      d.img (counters.fill_errors, events of kind error).  No read of
#      e.img fails: each waits for the two others' requests, about 3 s,
#      as each dd's new handle (a new flow, often at a reused address)
#      never passes a reader queued before it.
#  (f) a pre-warm's fill widened to a manifest block claims its neighbour
#      blocks too, and a reader waiting for one of them makes that fill
#      urgent, as for the run's own blocks: with origin_connections = 1,
#      readers of another template keeping a demand read always waiting,
#      and a manifest of 128 KiB blocks over 64 KiB ones, a warm of block 0
#      of f.img (which claims block 1) never gets the slot; a read of
#      block 1 gets its bytes once the warm's request turns urgent (before
#      the fix it waited for the warm until its deadline: EIO).
# Bytes read through the mount are the origin's.  SKIP (77) without
# python3 or FUSE.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http

PIN=$top_builddir/tools/imgcache-pin
[ -x "$PIN" ] || fail "$PIN is not built (run make)"
command -v getfattr >/dev/null 2>&1 || skip "getfattr not installed"

MIB=1048576
make_file "$T/data" 32
TRACE=$T/trace
start_faultsrv S "$T/data" --delay 1 --trace "$TRACE"

{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	printf 'origin_timeout = 30s\nrevalidate = 1h\nreadahead = 4M\n'
	printf 'origin_connections = 2\n'
	for n in a b; do
		printf '\n[template %s.img]\norigin = %s/lag/%s.img\n' "$n" "$URL" "$n"
	done
	printf '\n[template c.img]\norigin = %s/ok/c.img\n' "$URL"
} >"$T/conf"
MNT=$T/mnt
# -d: (b) reads the scheduler's debug lines.
start_imgcache "$T/conf" "$MNT" -d

# icpin ARGS...: imgcache-pin on our cache, bounded; output in $T/pin.out.
icpin() {
	bounded "$PIN" --cache-dir "$CACHE" "$@" >"$T/pin.out" 2>&1
}

# starts PATH: ranged GETs of PATH that have arrived so far.
starts() {
	awk -v p="$1" '$2 == "start" && $6 == p && $7 != "-" { n++ }
	               END { print n + 0 }' "$TRACE"
}

# Both templates opened (validated) before the measurement: with
# revalidate = 1h no HEAD request comes in between.
bounded dd if="$MNT/a.img" of=/dev/null bs=64K skip=448 count=1 \
	iflag=direct status=none
bounded dd if="$MNT/b.img" of=/dev/null bs=64K count=1 iflag=direct \
	status=none

# ------------------------------------------------ (a), (b), (d)
icpin --parallel 16 a.img 0-24M &
PIN_PID=$!
wait_for 20 sh -c "[ \$(awk '\$2 == \"start\" && \$6 == \"/lag/a.img\" &&
	\$7 != \"-\"' '$TRACE' | wc -l) -ge 2 ]" ||
	fail "the warm of a.img sent no requests"
L0=$(wc -l <"$TRACE")
bounded dd if="$MNT/b.img" of="$T/b.out" bs=64K skip=1 count=6 \
	iflag=direct status=none || not_ok "reading b.img failed"
rc=0
wait "$PIN_PID" || rc=$?
assert_eq "the warm of a.img succeeds" 0 "$rc"
[ "$rc" = 0 ] || show_log "$T/pin.out"
extract "$T/data" 65536 $((6 * 65536)) "$T/b.want"
assert_same "b.img read during the warm: the origin's bytes" \
	"$T/b.want" "$T/b.out"
extract "$T/data" 0 $((24 * MIB)) "$T/a.want"
extract "$MNT/a.img" 0 $((24 * MIB)) "$T/a.got"
assert_same "a.img pre-warmed: the origin's bytes" "$T/a.want" "$T/a.got"

# (a) the cap, from the server's in-flight count at each arrival.
MAXIN=$(awk '$2 == "start" && $4 > m { m = $4 } END { print m + 0 }' \
	"$TRACE")
assert_le "requests in flight at the origin, at most origin_connections" \
	"$MAXIN" 2
assert_eq "the warm kept both connections busy" 2 "$MAXIN"

# (b) a.img requests that started while each b.img request waited for
# its slot: from when it asked the scheduler to when it got one (the
# daemon's debug line, on the server's clock).  Not from when the reader
# started, nor from the previous request's end: on a loaded host a
# reader may take longer than a warm request to come back, and the
# slots that turned over meanwhile were nobody's to wait for.  Those
# that start in the wait were granted before it asked (at most
# origin_connections, in flight then); one granted during the wait
# would start in it too (its request arrives within milliseconds, the
# wait's end is a 1 s transfer away).
awk -v l0="$L0" '
	FNR == NR {
		if (index($0, "/lag/b.img: range bytes=") &&
		    match($0, /bytes=[0-9]+-[0-9]+/)) {
			r = substr($0, RSTART, RLENGTH)
			if (match($0, /asked at [0-9.]+, granted at [0-9.]+/)) {
				split(substr($0, RSTART, RLENGTH), f, " ")
				asked[r] = f[3] + 0
				granted[r] = f[6] + 0
			}
		}
		next
	}
	$2 == "start" && $7 != "-" && $6 == "/lag/a.img" { ta[na++] = $1 + 0 }
	FNR > l0 && $2 == "start" && $7 != "-" && $6 == "/lag/b.img" {
		if (!($7 in asked)) { print "none"; next }
		n = 0
		for (i = 0; i < na; i++)
			if (ta[i] > asked[$7] && ta[i] <= granted[$7]) n++
		print n
	}
' "$IMGCACHE_LOG" "$TRACE" >"$T/between"
NB=$(wc -l <"$T/between")
assert_eq "b.img: one request per block read, none ahead" 6 "$NB"
if grep -qv '^[0-9]' "$T/between"; then
	show_log "$IMGCACHE_LOG"
	not_ok "b.img: a request with no scheduler line in the daemon's log"
fi
WORST=$(grep '^[0-9]' "$T/between" | sort -n | tail -n 1)
note "a.img requests started while each b.img request waited:" \
	"$(tr '\n' ' ' <"$T/between")"
assert_le "a demand read waits for no more warm requests than are in flight" \
	"${WORST:-99}" 2

# (d) no readahead of b.img while the warm's requests still waited.
RA=$(awk '
	$2 == "start" && $7 != "-" {
		split(substr($7, 7), r, "-")
		len = r[2] - r[1] + 1
		if ($6 == "/lag/a.img") last_a = NR
		if ($6 == "/lag/b.img" && len > 65536) big[NR] = 1
	}
	END { for (i in big) if (i < last_a) n++; print n + 0 }
' "$TRACE")
assert_eq "no readahead request of b.img while others wait for a slot" 0 "$RA"
SKIPPED=$(getfattr --only-values -n user.imgcache.readahead_skipped \
	"$MNT/b.img" 2>/dev/null || echo none)
case $SKIPPED in
'' | none | *[!0-9]*)
	not_ok "user.imgcache.readahead_skipped of b.img: '$SKIPPED'" ;;
*) assert_le "b.img: readahead skips counted" 1 "$SKIPPED" ;;
esac

# ------------------------------------------------ (c) --rate
icpin --rate 1M c.img 0-8M || {
	show_log "$T/pin.out"
	not_ok "imgcache-pin --rate 1M c.img 0-8M"
}
# Bytes of c.img's requests, their first arrival and their last end.
awk '
	$2 == "start" && $6 == "/ok/c.img" && $7 != "-" {
		split(substr($7, 7), r, "-")
		bytes += r[2] - r[1] + 1
		c[$3] = 1
		if (t0 == "") t0 = $1
	}
	$2 == "end" && ($3 in c) { t1 = $1 }
	END { printf "%d %d\n", bytes, (t1 - t0) * 1000 }
' "$TRACE" >"$T/rate"
read -r CBYTES CMS <"$T/rate"
assert_eq "c.img: the warm fetched the 8 MiB pinned" $((8 * MIB)) "$CBYTES"
# 6 MiB beyond the credit at 1 MiB/s: 6 s; 1.5 MiB/s would be 4 s.
note "c.img: $CBYTES bytes in $CMS ms (server side)"
assert_le "c.img: --rate 1M: 6 MiB past the credit take >= 4 s (ms)" \
	4000 "$CMS"
extract "$T/data" 0 $((8 * MIB)) "$T/c.want"
extract "$MNT/c.img" 0 $((8 * MIB)) "$T/c.got"
assert_same "c.img pre-warmed at a rate: the origin's bytes" \
	"$T/c.want" "$T/c.got"

stop_imgcache "$MNT"

# ------------------------------------------------ (e) slot wait, no failure
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"
{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	printf 'origin_timeout = 10s\nrevalidate = 1h\nreadahead = 0\n'
	printf 'origin_connections = 1\n'
	for n in d e; do
		printf '\n[template %s.img]\norigin = %s/lag/%s.img\n' "$n" "$URL" "$n"
	done
} >"$T/conf.e"
start_imgcache "$T/conf.e" "$MNT"
bounded dd if="$MNT/d.img" of=/dev/null bs=64K skip=300 count=1 \
	iflag=direct status=none
# keep_busy NAME LIMIT: three readers of distinct blocks of NAME below
# LIMIT, one at a time each, until $T/e.stop exists: one of them always
# waits for the slot when it comes free.  Their pids in $T/e.pids, the
# blocks that failed in $T/NAME.fail.
keep_busy() {
	rm -f "$T/e.stop" "$T/e.pids"
	: >"$T/$1.fail"
	for k in 0 1 2; do
		(
			b=$k
			while [ ! -e "$T/e.stop" ] && [ "$b" -lt "$2" ]; do
				dd if="$MNT/$1" of=/dev/null bs=64K skip="$b" count=1 \
					iflag=direct status=none || echo "$b" >>"$T/$1.fail"
				b=$((b + 3))
			done
		) &
		echo $! >>"$T/e.pids"
	done
}
keep_busy e.img 500
wait_for 20 sh -c "[ \$(awk '\$2 == \"start\" && \$6 == \"/lag/e.img\"' \
	'$TRACE' | wc -l) -ge 3 ]" || fail "the readers of e.img sent no requests"
D0=$(starts /lag/d.img)
T0=$(now_ms)
icpin d.img 0-64K || true
T1=$(now_ms)
# At once, before the failed-fill memory (500 ms) of the old code lapsed.
if bounded dd if="$MNT/d.img" of="$T/d.out" bs=64K count=1 iflag=direct \
	status=none 2>"$T/d.err"; then
	extract "$T/data" 0 65536 "$T/d.want"
	assert_same "d.img read after its warm gave up: the origin's bytes" \
		"$T/d.want" "$T/d.out"
else
	not_ok "d.img read after its warm gave up failed: $(cat "$T/d.err")"
fi
: >"$T/e.stop"
while read -r p; do wait "$p" || true; done <"$T/e.pids"
note "the warm of d.img returned after $((T1 - T0)) ms"
assert_le "the warm waited for its deadline (ms)" 9000 $((T1 - T0))
assert_eq "d.img: one request after the mark, the read's (the warm got no slot)" \
	$((D0 + 1)) "$(starts /lag/d.img)"
assert_eq "e.img: no read of the healthy origin failed (blocks)" "" \
	"$(tr '\n' ' ' <"$T/e.img.fail")"
stop_imgcache "$MNT"
FE=$(sqlite3 -cmd '.timeout 5000' "$CACHE/index.db" "select c.fill_errors
	from counters c join templates t on t.id = c.tid where t.name = 'd.img'")
EV=$(sqlite3 -cmd '.timeout 5000' "$CACHE/index.db" "select count(*)
	from events e join templates t on t.id = e.tid
	where t.name = 'd.img' and e.kind = 'error'")
assert_eq "d.img: no fill error counted" 0 "${FE:-0}"
assert_eq "d.img: no error event" 0 "$EV"

# ------------------------------------------------ (f) widened claims
MANIFEST=$top_builddir/tools/imgcache-manifest
"$MANIFEST" --block-size 128K -o "$T/data.mf" "$T/data" >/dev/null ||
	fail "imgcache-manifest failed"
TRACE2=$T/trace2
start_faultsrv S2 "$T/data" --delay 1 --manifest "$T/data.mf" \
	--trace "$TRACE2"
rm -rf "$CACHE"
{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	printf 'origin_timeout = 10s\nrevalidate = 1h\nreadahead = 0\n'
	printf 'origin_connections = 1\n'
	for n in f g; do
		printf '\n[template %s.img]\norigin = %s/lag/%s.img\n' "$n" "$URL" "$n"
	done
} >"$T/conf.f"
# -d: the warm's request, queued, is seen in the debug log.
start_imgcache "$T/conf.f" "$MNT" -d
# Both opened, their manifests settled (a block far from those below).
for n in f g; do
	bounded dd if="$MNT/$n.img" of=/dev/null bs=64K skip=300 count=1 \
		iflag=direct status=none || fail "reading $n.img failed"
done
grep -q "template f.img: generation 1 verified against manifest" \
	"$IMGCACHE_LOG" || {
	show_log "$IMGCACHE_LOG"
	fail "f.img took no manifest"
}
keep_busy g.img 280
wait_for 20 sh -c "[ \$(awk '\$2 == \"start\" && \$6 == \"/lag/g.img\"' \
	'$TRACE2' | wc -l) -ge 4 ]" || fail "the readers of g.img sent no requests"
# The warm of block 0 (its fetch: manifest block 0, blocks 0 and 1) waits
# for the slot behind the readers of g.img.
icpin f.img 0-64K &
PIN_PID=$!
wait_for 20 grep -q "/lag/f.img: range bytes=0-131071 (class 1): asking for a slot" \
	"$IMGCACHE_LOG" || {
	show_log "$IMGCACHE_LOG"
	fail "the warm of f.img never asked for a slot"
}
T0=$(now_ms)
if bounded dd if="$MNT/f.img" of="$T/f.out" bs=64K skip=1 count=1 \
	iflag=direct status=none 2>"$T/f.err"; then
	extract "$T/data" 65536 65536 "$T/f.want"
	assert_same "f.img block 1 (claimed by the warm's widened fill): the origin's bytes" \
		"$T/f.want" "$T/f.out"
else
	not_ok "f.img block 1, claimed by the warm's widened fill, failed: $(cat "$T/f.err")"
fi
T1=$(now_ms)
note "the read of f.img block 1 took $((T1 - T0)) ms (origin_timeout 10 s)"
: >"$T/e.stop"
while read -r p; do wait "$p" || true; done <"$T/e.pids"
wait "$PIN_PID" || true
assert_eq "g.img: no read failed (blocks)" "" "$(tr '\n' ' ' <"$T/g.img.fail")"
stop_imgcache "$MNT"
