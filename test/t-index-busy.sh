#!/bin/sh
# t-index-busy: another process holds index.db write-locked (an sqlite3
# shell in BEGIN IMMEDIATE, fed through a fifo) for longer than the busy
# timeout while 4 MiB of new blocks are read through the mount (nginx
# origin) and a pin is changed.  Reads stay correct; the daemon logs once
# that the index is locked and once that commits resumed; once the lock is
# released every block read is in the index (none dropped, no "commit
# failed"), the pin set too; imgcache-report reads beside the lock and an
# advancing report fails within its busy timeout with a message saying the
# index is locked; a reload (SIGHUP) during the lock is applied; after a
# clean stop and a restart those blocks are served with no origin GET.
# SKIP (77) without FUSE, nginx, curl or sqlite3.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_nginx
command -v curl >/dev/null 2>&1 || skip "curl not installed"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"
require_local_http
REPORT=$top_builddir/tools/imgcache-report
PIN=$top_builddir/tools/imgcache-pin

MIB=1048576
HOLD_S=10 # longer than the index's 5 s busy timeout
make_file "$T/www/disk.img" 16
cp "$T/www/disk.img" "$T/disk.orig"

PORT=$(free_port)
nginx_config "$PORT" "log_format t '\$request|\$status|\$http_range';
    access_log $T/nginx/access.log t;"
answers() { curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/disk.img"; }
"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
_register $! -
wait_for 10 answers || {
	show_log "$T/nginx/error.log"
	fail "nginx did not start"
}
# Range GETs of the template (HEADs revalidate; they move no bytes).
gets() { grep -c '^GET /disk.img' "$T/nginx/access.log" || true; }

{
	global_section
	# Exactly the blocks read are cached: no readahead.
	printf 'readahead = 0\nrevalidate = 0\n'
	printf '\n[template disk.img]\norigin = http://127.0.0.1:%s/disk.img\n' \
		"$PORT"
	# Full after 1 MiB: more needs evictions, whose removals must commit.
	printf '\n[template q.img]\norigin = http://127.0.0.1:%s/disk.img\n' \
		"$PORT"
	printf 'quota = 1M\n'
} >"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img

q() { sqlite3 -cmd ".timeout 5000" "$CACHE/index.db" "$1"; }
# rows FIRST LAST [TEMPLATE]: block rows of blocks FIRST..LAST.
rows() {
	q "SELECT count(*) FROM blocks b JOIN templates t ON t.id = b.tid
	   WHERE t.name = '${3:-disk.img}' AND blk BETWEEN $1 AND $2"
}
rows_are() { [ "$(rows "$1" "$2")" = "$3" ]; }

start_imgcache "$T/conf" "$MNT"
wait_for 10 test -S "$CACHE/ctl.sock" || fail "no control socket"
# 1 MiB before the lock, committed before it is taken.
bounded dd if="$F" of="$T/a" bs=1M count=1 iflag=direct status=none
wait_for 10 rows_are 0 15 16 || not_ok "the first 1 MiB reached the index"

# --- 1. hold the write lock; read 4 MiB of new blocks; pin; reload
mkfifo "$T/sq.in"
sqlite3 "$CACHE/index.db" <"$T/sq.in" >"$T/sq.out" 2>&1 &
SQ_PID=$!
_register "$SQ_PID" -
exec 7>"$T/sq.in"
printf '.timeout 10000\nBEGIN IMMEDIATE;\n.system touch %s/locked\n' "$T" >&7
wait_for 15 test -e "$T/locked" || fail "sqlite3 did not take the lock"
t0=$(now_ms)
bounded dd if="$F" of="$T/b" bs=1M skip=4 count=4 iflag=direct status=none
extract "$T/disk.orig" $((4 * MIB)) $((4 * MIB)) "$T/b.orig"
assert_same "4 MiB read during the lock equal the origin" "$T/b" "$T/b.orig"
assert_le "the read during the lock is not held up (ms)" \
	$(($(now_ms) - t0)) 4000
# q.img: 1 MiB fills its quota; 2 MiB more need evictions, which cannot
# commit their removals now: served (uncached), correct, in bounded time.
t1=$(now_ms)
bounded dd if="$MNT/q.img" of="$T/q" bs=1M count=3 iflag=direct status=none
head -c $((3 * MIB)) "$T/disk.orig" >"$T/q.orig"
assert_same "3 MiB of a template at its quota during the lock" "$T/q" \
	"$T/q.orig"
assert_le "... read within 20 s (ms)" $(($(now_ms) - t1)) 20000
rc=0
bounded "$PIN" --cache-dir "$CACHE" --no-fetch disk.img 12M-13M \
	>"$T/pin.out" 2>&1 || rc=$?
assert_eq "imgcache-pin during the lock succeeds" 0 "$rc"
busy_logged() { grep -q 'index is locked by another process' "$IMGCACHE_LOG"; }
wait_for 8 busy_logged ||
	not_ok "the daemon logs that the index is locked"
# Readers beside the lock: a report that records nothing reads at once; an
# advancing one waits its busy timeout at most and says why it failed.
t1=$(now_ms)
rc=0
bounded "$REPORT" --cache-dir "$CACHE" --no-advance >"$T/rep" 2>&1 || rc=$?
assert_eq "imgcache-report --no-advance during the lock succeeds" 0 "$rc"
assert_le "... and answers within 2 s (ms)" $(($(now_ms) - t1)) 2000
t1=$(now_ms)
rc=0
bounded "$REPORT" --cache-dir "$CACHE" >"$T/rep2" 2>&1 || rc=$?
if [ "$rc" != 0 ] && grep -q 'locked' "$T/rep2"; then
	ok "an advancing report during the lock fails saying the index is locked"
else
	not_ok "advancing report during the lock: status $rc: $(head -n 3 "$T/rep2")"
fi
assert_le "... within the busy timeout + 3 s (ms)" $(($(now_ms) - t1)) 8000
kill -HUP "$IMGCACHE_PID"
reloaded() { grep -q 'reloaded ' "$IMGCACHE_LOG"; }
wait_for 15 reloaded || not_ok "a reload during the lock finishes"
grep -q 'keeping the running configuration' "$IMGCACHE_LOG" &&
	not_ok "the reload during the lock was refused"
# Hold past the busy timeout (the fault is the duration; nothing to poll).
left=$((HOLD_S * 1000 - ($(now_ms) - t0)))
[ "$left" -le 0 ] || sleep "$((left / 1000)).$(printf %03d $((left % 1000)))"
assert_eq "no block row of the 4 MiB while locked" 0 "$(rows 64 127)"
printf 'ROLLBACK;\n' >&7
exec 7>&-
_wait_exit "$SQ_PID" 10 || not_ok "sqlite3 exits after ROLLBACK"
_unregister "$SQ_PID"

# --- 2. the rows land; the log tells the busy period once
wait_for 15 rows_are 64 127 64 ||
	not_ok "every block read during the lock reaches the index ($(rows 64 127) of 64)"
resumed() { grep -q 'index is writable again' "$IMGCACHE_LOG"; }
wait_for 10 resumed || not_ok "the daemon logs that commits resumed"
assert_eq "the busy period is logged once" 1 \
	"$(grep -c 'index is locked by another process' "$IMGCACHE_LOG")"
assert_eq "its end is logged once" 1 \
	"$(grep -c 'index is writable again' "$IMGCACHE_LOG")"
if grep -q 'commit of .* failed\|dropping' "$IMGCACHE_LOG"; then
	not_ok "no record dropped: $(grep 'commit of\|dropping' "$IMGCACHE_LOG" | head -n 1)"
else
	ok "no record dropped"
fi
pinned() { [ "$(q "SELECT count(*) FROM pins WHERE start = $((12 * MIB))")" = 1 ]; }
wait_for 10 pinned || not_ok "the pin made during the lock reaches the index"
stop_imgcache "$MNT"
assert_eq "after a clean stop: blocks 0..15 and 64..127 in the index" 80 \
	"$(rows 0 127)"
assert_le "q.img: the index claims no more than its quota (blocks)" \
	"$(rows 0 255 q.img)" 16
grep 'index writer\|index:' "$IMGCACHE_LOG" | sed 's/^/# log: /'

# --- 3. restart: those blocks come from the cache
before=$(gets)
start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/a2" bs=1M count=1 iflag=direct status=none
bounded dd if="$F" of="$T/b2" bs=1M skip=4 count=4 iflag=direct status=none
head -c "$MIB" "$T/disk.orig" >"$T/a.orig"
assert_same "first 1 MiB after restart equals the origin" "$T/a2" "$T/a.orig"
assert_same "the 4 MiB read during the lock, after restart" "$T/b2" "$T/b.orig"
assert_eq "after restart: no origin GET for blocks read during the lock" \
	"$before" "$(gets)"
# Every block the index claims for q.img holds its bytes: the first read
# after a start verifies each one and would discard a punched one.
bounded dd if="$MNT/q.img" of="$T/q2" bs=1M count=3 iflag=direct status=none
assert_same "q.img after restart" "$T/q2" "$T/q.orig"
if grep -q 'discarding' "$IMGCACHE_LOG"; then
	not_ok "no claimed block lost its bytes: $(grep discarding "$IMGCACHE_LOG" | head -n 1)"
else
	ok "no claimed block lost its bytes"
fi
stop_imgcache "$MNT"
