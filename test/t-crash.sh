#!/bin/sh
# t-crash: kill -9 the daemon at a random moment (0-300 ms after the mount)
# while 4 parallel O_DIRECT random readers (more reads than 300 ms allow)
# fill blocks and a tight quota (4M of a 24M template) forces evictions,
# ITER times (default 40; ITER=200 or more by hand).
# Each time: no reader saw a wrong byte before the kill (readers cut off by
# the kill see ENOTCONN, which is expected), the index left behind passes
# PRAGMA integrity_check, the dead mount is lazily unmounted, the daemon
# mounts again, a whole read equals the origin (sha256), and the index is
# sound after a clean stop too.  imgcache-scrub reports how many blocks the
# crashed index claimed with bytes other than their checksum (a note, not
# an assertion: the first read after a start verifies every block).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"
command -v sha256sum >/dev/null 2>&1 || skip "sha256sum not installed"
SCRUB=$top_builddir/tools/imgcache-scrub

ITER=${ITER:-40}
SIZE=$((24 * 1048576 + 777)) # a short last block
make_file_bytes "$T/src/disk.img" "$SIZE"
# Some all-zero blocks (holes in the cache, never evicted).
dd if=/dev/zero of="$T/src/disk.img" bs=64K seek=100 count=8 conv=notrunc \
	status=none
WANT=$(sha256sum <"$T/src/disk.img" | cut -d' ' -f1)
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\nquota = 4M\n' \
	"$T/omnt/disk.img" >>"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img
DB=$CACHE/index.db

# rand N: a random integer in [0, N).
rand() { echo $(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % $1)); }

# bad MSG: a failed assertion of this iteration.
bad() {
	not_ok "$@"
	iter_bad=1
}

# integrity: PRAGMA integrity_check of a copy of index.db and its
# WAL (the copy is recovered, the cache is left as the crash left it).
integrity() {
	rm -rf "$T/chk"
	mkdir "$T/chk"
	cp "$DB" "$T/chk/index.db"
	[ ! -e "$DB-wal" ] || cp "$DB-wal" "$T/chk/index.db-wal"
	sqlite3 "$T/chk/index.db" 'PRAGMA integrity_check' 2>&1 | head -n 5
}

fails=0
bad_claims=0
iters_with_bad=0
killed_with_readers=0
t0=$(now_ms)
i=1
while [ "$i" -le "$ITER" ]; do
	iter_bad=0
	start_imgcache "$T/conf" "$MNT"
	pid=$IMGCACHE_PID
	# More reads than 300 ms allow: the kill always lands among reads.
	bounded "$RANDREAD" -d -j 4 -n 2000 -b 256K -s "$i" "$F" \
		"$T/src/disk.img" >"$T/rr.out" 2>&1 &
	rr=$!
	# Fault injection timing (not synchronisation): kill 0-300 ms in.
	delay=$(rand 301)
	sleep "$(printf '0.%03d' "$delay")"
	kill -KILL "$pid"
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	_unregister "$pid"
	[ "$rc" = 137 ] || bad "iteration $i: daemon status $rc, not 137 (SIGKILL)"
	fusermount3 -uz "$MNT" || bad "iteration $i: fusermount3 -uz failed"
	is_mounted "$MNT" && fail "iteration $i: $MNT still mounted"
	rrc=0
	wait "$rr" || rrc=$?
	[ "$rrc" = 0 ] || killed_with_readers=$((killed_with_readers + 1))
	# Read errors (ENOTCONN) are expected; a wrong byte never is.
	if grep -v ' 0 mismatches$' "$T/rr.out" | grep -q mismatch; then
		bad "iteration $i (kill after ${delay} ms): a reader saw wrong bytes: $(grep mismatch "$T/rr.out" | head -n 1)"
		show_log "$IMGCACHE_LOG" 20
	fi
	ic=$(integrity)
	[ "$ic" = ok ] || bad "iteration $i: integrity_check after kill -9: $ic"
	if [ -x "$SCRUB" ]; then
		src=0
		"$SCRUB" -C "$CACHE" >"$T/scrub.out" 2>&1 || src=$?
		case $src in
		0) ;;
		1)
			n=$(grep -c ': block ' "$T/scrub.out" || true)
			bad_claims=$((bad_claims + n))
			iters_with_bad=$((iters_with_bad + 1))
			;;
		*) bad "iteration $i: imgcache-scrub: $(tail -n 1 "$T/scrub.out")" ;;
		esac
	fi
	start_imgcache "$T/conf" "$MNT"
	got=$(bounded sha256sum <"$F" | cut -d' ' -f1)
	[ "$got" = "$WANT" ] || bad "iteration $i (kill after ${delay} ms): whole read after restart differs from origin"
	stop_imgcache "$MNT"
	ic=$(integrity)
	[ "$ic" = ok ] || bad "iteration $i: integrity_check after a clean stop: $ic"
	[ "$iter_bad" = 0 ] || fails=$((fails + 1))
	i=$((i + 1))
done
secs=$((($(now_ms) - t0) / 1000))
note "$ITER kill -9 iterations in ${secs} s; readers cut off by the kill in $killed_with_readers"
if [ -x "$SCRUB" ]; then
	note "scrub after kill -9: $bad_claims blocks claimed by the index with other bytes, in $iters_with_bad of $ITER iterations (verified and refetched on first read)"
fi
assert_eq "iterations with a failure" 0 "$fails"
assert_le "readers were cut off by the kill in most iterations" \
	$((ITER / 2)) "$killed_with_readers"
stop_originfs "$T/omnt"
