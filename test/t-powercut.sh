#!/bin/sh
# t-powercut: simulated host power cuts.  The daemon runs under
# test/powercut.so (an LD_PRELOAD shim, see test/powercut.c), which undoes
# every write to the cache files (data files, index.db, -wal, -shm) not
# made durable by fsync/fdatasync and exits 137 at the cut: after N tracked
# writes (N random up to what one iteration writes), or when a trigger file
# appears (0-1.5 s after the readers start: the writer commits every second).  Every third iteration, half
# of the non-durable writes survive instead (a disk that wrote back part of
# its cache).  While 4 O_DIRECT random readers fill blocks, a 4M quota on a
# 16M template forces evictions.  After each cut, offline and without the
# shim: no reader saw a wrong byte; the index (a copy of index.db + WAL)
# passes integrity_check; every block the index claims present for the
# current generation has exactly the origin's bytes in the data file (or is
# all-zero when flagged so); imgcache-scrub finds every checksum right.
# Then the daemon mounts again and a whole read equals the origin.
# ITER iterations (default 20).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
SHIM=$top_builddir/test/powercut.so
SCRUB=$top_builddir/tools/imgcache-scrub
[ -f "$SHIM" ] || fail "$SHIM is not built (make check builds it)"
[ -x "$SCRUB" ] || fail "$SCRUB is not built (run make)"
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"
python3 -c 'import sqlite3' 2>/dev/null || skip "python3 has no sqlite3 module"
command -v sha256sum >/dev/null 2>&1 || skip "sha256sum not installed"

ITER=${ITER:-20}
SIZE=$((16 * 1048576 + 3000)) # a short last block
SRC=$T/src/disk.img
make_file_bytes "$SRC" "$SIZE"
# All-zero blocks: punched holes flagged in the index.
dd if=/dev/zero of="$SRC" bs=64K seek=40 count=6 conv=notrunc status=none
dd if=/dev/zero of="$SRC" bs=64K seek=201 count=1 conv=notrunc status=none
WANT=$(sha256sum <"$SRC" | cut -d' ' -f1)
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\nquota = 4M\n' "$SRC" >>"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img
TRIG=$T/cut-now

# The offline check: argv cache_dir origin template workdir.  Exit 0 when
# every claimed block equals the origin's, 1 otherwise, 2 when the index
# cannot be read.
cat >"$T/check.py" <<'EOF'
import os, shutil, sqlite3, sys

cache, origin_path, name, work = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
for suffix in ("", "-wal"):
    p = os.path.join(cache, "index.db" + suffix)
    if os.path.exists(p):
        shutil.copyfile(p, os.path.join(work, "index.db" + suffix))
try:
    db = sqlite3.connect(os.path.join(work, "index.db"))
    ic = [r[0] for r in db.execute("PRAGMA integrity_check")]
    if ic != ["ok"]:
        print("integrity_check: " + "; ".join(ic[:3]))
        sys.exit(2)
    # A cut before the schema was durable leaves an empty index: it
    # claims nothing, and the daemon creates the tables at its next start.
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")]
    row = None if "templates" not in tables else db.execute(
        "SELECT id, generation, block_size, size FROM templates"
        " WHERE name = ?", (name,)).fetchone()
    rows = [] if row is None else db.execute(
        "SELECT blk, flags FROM blocks WHERE tid = ? AND gen = ?"
        " ORDER BY blk", (row[0], row[1])).fetchall()
except sqlite3.Error as e:
    print("index unreadable: %s" % e)
    sys.exit(2)
if row is None:
    print("claimed 0 blocks (%s)" % ("no template row yet" if tables
                                     else "an empty index"))
    sys.exit(0)
tid, gen, bs, size = row
origin = open(origin_path, "rb").read()
if size != len(origin):
    print("template size %d in the index, origin has %d" % (size, len(origin)))
    sys.exit(1)
path = os.path.join(cache, "data", "%s.%d" % (name, gen))
data = open(path, "rb") if os.path.exists(path) else None
bad, zeros = [], 0
for blk, flags in rows:
    off = blk * bs
    n = min(bs, size - off)
    if n <= 0:
        bad.append("block %d: past the end" % blk)
        continue
    want = origin[off:off + n]
    if flags & 1:
        zeros += 1
        got = bytes(n)
    elif data is None:
        got = b""
    else:
        data.seek(off)
        got = data.read(n)
    if got != want:
        if len(got) < n:
            what = "data file too short"
        elif got == bytes(n):
            what = "zeros (a hole)"
        elif flags & 1:
            what = "flagged all-zero, origin is not"
        else:
            what = "other bytes"
        bad.append("block %d: %s" % (blk, what))
print("claimed %d blocks (%d all-zero), %d not the origin's%s" % (
    len(rows), zeros, len(bad), ": " + ", ".join(bad[:8]) if bad else ""))
sys.exit(1 if bad else 0)
EOF

# rand N: a random integer in [0, N).
rand() { echo $(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % $1)); }

# bad MSG: a failed assertion of this iteration.
bad() {
	not_ok "$@"
	iter_bad=1
}

# start_cut AFTER KEEP SEED: start the daemon under the shim, in the
# background (pid in $PC_PID, stderr in $PC_LOG); wait until it mounted or
# the power was cut first.
start_cut() {
	PC_LOG=$T/pc.$i.log
	mkdir -p "$MNT"
	env LD_PRELOAD="$SHIM" IMGCACHE_POWERCUT_DIR="$CACHE" \
		IMGCACHE_POWERCUT_AFTER="$1" IMGCACHE_POWERCUT_TRIGGER="$TRIG" \
		IMGCACHE_POWERCUT_KEEP="$2" IMGCACHE_POWERCUT_SEED="$3" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		"$IMGCACHE" -f "$T/conf" "$MNT" >"$PC_LOG" 2>&1 &
	PC_PID=$!
	_register "$PC_PID" "$MNT"
	wait_for 10 mounted_or_gone "$PC_PID" ||
		fail "iteration $i: the daemon neither mounted nor exited in 10 s"
}

mounted_or_gone() {
	! _pid_alive "$1" ||
		{ is_mounted "$MNT" && timeout -k 2 10 mountpoint -q "$MNT"; }
}

alive_both() { _pid_alive "$1" && _pid_alive "$2"; }

mkdir -p "$CACHE" # the shim resolves it at start
chmod 700 "$CACHE"
fails=0
writes=0 # tracked writes of an iteration cut at its end (calibration)
cut_early=0
claimed_total=0
t0=$(now_ms)
i=1
while [ "$i" -le "$ITER" ]; do
	iter_bad=0
	rm -f "$TRIG"
	keep=0
	[ $((i % 3)) != 0 ] || keep=50
	after=0
	delay=-1
	if [ "$writes" = 0 ]; then
		how="at the end of the readers (calibration)"
	elif [ $((i % 2)) = 1 ]; then
		after=$(($(rand "$writes") + 1))
		how="after $after tracked writes"
	else
		delay=$(rand 1501)
		how="by trigger ${delay} ms after the readers started"
	fi
	[ "$keep" = 0 ] || how="$how, keeping $keep% of non-durable writes"
	start_cut "$after" "$keep" "$i"
	rr=
	if _pid_alive "$PC_PID"; then
		bounded "$RANDREAD" -d -j 4 -n 300 -b 256K -s "$i" "$F" "$SRC" \
			>"$T/rr.out" 2>&1 &
		rr=$!
		if [ "$delay" -ge 0 ]; then
			# Fault injection timing, not synchronisation.
			sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
			: >"$TRIG"
		fi
		while alive_both "$PC_PID" "$rr"; do sleep 0.05; done
		_pid_alive "$PC_PID" && : >"$TRIG"
		_wait_exit "$PC_PID" 10 || fail "iteration $i: no power cut 10 s after the trigger"
	else
		cut_early=$((cut_early + 1))
	fi
	rc=0
	wait "$PC_PID" 2>/dev/null || rc=$?
	_unregister "$PC_PID"
	if [ "$rc" != 137 ] || ! grep -q '^powercut: power cut after' "$PC_LOG"; then
		bad "iteration $i ($how): the daemon exited with status $rc, not by the cut"
		show_log "$PC_LOG"
	fi
	n=$(sed -n 's/^powercut: power cut after \([0-9]*\) .*/\1/p' "$PC_LOG")
	[ "$writes" != 0 ] || writes=${n:-0}
	if is_mounted "$MNT"; then
		fusermount3 -uz "$MNT" || bad "iteration $i: fusermount3 -uz failed"
	fi
	if [ -n "$rr" ]; then
		wait "$rr" || true
		if grep -v ' 0 mismatches$' "$T/rr.out" | grep -q mismatch; then
			bad "iteration $i ($how): a reader saw wrong bytes: $(grep mismatch "$T/rr.out" | head -n 1)"
		fi
	fi
	# Offline, without the shim.
	crc=0
	python3 "$T/check.py" "$CACHE" "$SRC" disk.img "$T/chk" >"$T/check.out" 2>&1 ||
		crc=$?
	case $crc in
	0)
		c=$(sed -n 's/^claimed \([0-9]*\) .*/\1/p' "$T/check.out")
		claimed_total=$((claimed_total + ${c:-0}))
		;;
	1)
		bad "iteration $i (cut $how): the index claims a block whose bytes are not the origin's: $(cat "$T/check.out")"
		show_log "$PC_LOG" 10
		;;
	*) bad "iteration $i (cut $how): the index after the cut: $(tail -n 3 "$T/check.out")" ;;
	esac
	src=0
	"$SCRUB" -C "$CACHE" >"$T/scrub.out" 2>&1 || src=$?
	if [ "$src" != 0 ]; then
		bad "iteration $i (cut $how): imgcache-scrub exit $src: $(grep -m 3 -E ': block |imgcache-scrub:' "$T/scrub.out" | tr '\n' ' ')"
	fi
	start_imgcache "$T/conf" "$MNT"
	got=$(bounded sha256sum <"$F" | cut -d' ' -f1)
	[ "$got" = "$WANT" ] || bad "iteration $i (cut $how): whole read after the cut differs from the origin"
	stop_imgcache "$MNT"
	[ "$iter_bad" = 0 ] || fails=$((fails + 1))
	i=$((i + 1))
done
secs=$((($(now_ms) - t0) / 1000))
note "$ITER power cuts in ${secs} s ($cut_early before the mount); one iteration makes about $writes tracked writes; $claimed_total claimed blocks checked against the origin"
check "the calibration iteration saw tracked writes" test "$writes" -gt 0
assert_eq "iterations with a failure" 0 "$fails"
