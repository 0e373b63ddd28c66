#!/bin/sh
# t-hung-isolation: a hung HTTP origin holds only its own readers (issue 14,
# point 2).  Template A is on a faultsrv whose ranged GETs are read and
# never answered (sw/ with a lasting "hang!" fault: HEAD still answers, so
# A is served); B on a second, healthy faultsrv (ok/, another host:port,
# so another set of transfer slots).  origin_timeout = 4s.
# 120 readers of distinct uncached blocks of A, one thread each in two
# processes: 72 O_DIRECT (synchronous FUSE requests, a FUSE worker each:
# more than the 64 workers the daemon used to have) and 48 buffered
# (kernel readahead: background FUSE requests, which the kernel holds
# back beyond max_background, then a retry of the failed page).  Each
# reader notes when its pread starts and ends.  Asserted:
#  - every reader gets EIO, each within origin_timeout + 2 s of its own
#    start (before: a reader queued behind others' waits, in the kernel or
#    for a FUSE worker, or whose page retry asked the origin again, got it
#    after 2x, 3x... origin_timeout);
#  - no range of A is requested from the origin twice (a retry of a
#    failed read fails from the failed-fill memory);
#  - while A's readers are blocked, B is probed in a loop: stat, an
#    O_DIRECT open and a 64 KiB read of an uncached block, a buffered open
#    and a 64 KiB read of another: each step within 2 s and the bytes equal
#    the origin's (before: a stat of B waited seconds for a FUSE worker,
#    and buffered reads queued behind A's in the kernel's background
#    queue).
# Figures (idle B, B under the load, readers' times, threads) are printed
# as "# " notes.  SKIP (77) without python3 or FUSE.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http

ORIGIN_TIMEOUT_MS=4000
MARGIN_MS=2000
B_MAX_MS=2000
NDIRECT=72
NBUF=48
N=$((NDIRECT + NBUF))
STRIDE=8 # blocks between readers: beyond the kernel's readahead window

make_file "$T/a.data" 64
make_file "$T/b.data" 16
TRACE=$T/a.trace
start_faultsrv A "$T/a.data" --fault-file "$T/fault" --trace "$TRACE"
AURL=$URL
start_faultsrv B "$T/b.data"
BURL=$URL
{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	printf 'origin_timeout = %dms\nrevalidate = 1h\n' "$ORIGIN_TIMEOUT_MS"
	printf '\n[template a.img]\norigin = %s/sw/a.img\n' "$AURL"
	printf '\n[template b.img]\norigin = %s/ok/b.img\n' "$BURL"
} >"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"

# readers.py PATH FIRST MODE COUNT STRIDE GO OUT: COUNT threads, each opens
# PATH (MODE direct or buffered), waits for the file GO, preads block
# FIRST + i * STRIDE and writes "MODE i START_MS END_MS RESULT" to OUT
# (epoch ms; RESULT ok, short or an errno name).
cat >"$T/readers.py" <<'EOF'
import errno, mmap, os, sys, threading, time
path, first, mode, count, stride, go, out = sys.argv[1], int(sys.argv[2]), \
    sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
BS = 65536
res = [None] * count
def run(i):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if mode == "direct" else 0))
    buf = mmap.mmap(-1, BS)
    while not os.path.exists(go):
        time.sleep(0.005)
    t0 = time.time()
    try:
        n = os.preadv(fd, [buf], (first + i * stride) * BS)
        r = "ok" if n == BS else "short"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    t1 = time.time()
    res[i] = "%s %d %d %d %s" % (mode, i, int(t0 * 1000), int(t1 * 1000), r)
    os.close(fd)
th = [threading.Thread(target=run, args=(i,)) for i in range(count)]
for t in th:
    t.start()
with open(out + ".ready", "w"):
    pass
for t in th:
    t.join()
with open(out, "w") as f:
    f.write("\n".join(x for x in res if x) + "\n")
EOF
# probe.py PATH ORIG OFF1 OFF2: one round on B, one line per step "STEP MS
# RESULT": stat, O_DIRECT open, 64 KiB read at OFF1, buffered open, 64 KiB
# read at OFF2 (RESULT ok, mismatch, or an errno name).
cat >"$T/probe.py" <<'EOF'
import errno, mmap, os, sys, time
path, orig, off1, off2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4])
LEN = 65536
def step(name, fn):
    t0 = time.monotonic()
    try:
        v, r = fn(), "ok"
    except OSError as e:
        v, r = None, errno.errorcode.get(e.errno, str(e.errno))
    print(name, int((time.monotonic() - t0) * 1000), r, flush=True)
    return v
def read_cmp(fd, off):
    buf = mmap.mmap(-1, LEN)
    n = os.preadv(fd, [buf], off)
    with open(orig, "rb") as f:
        f.seek(off)
        want = f.read(LEN)
    if buf[:n] != want:
        raise OSError(errno.EILSEQ, "mismatch")
step("stat", lambda: os.stat(path))
for mode, off in (("direct", off1), ("buffered", off2)):
    fl = os.O_RDONLY | (os.O_DIRECT if mode == "direct" else 0)
    fd = step("open_" + mode, lambda: os.open(path, fl))
    if fd is not None:
        step("read_" + mode, lambda: read_cmp(fd, off))
        os.close(fd)
EOF
# maxf STEP FILE: the largest time of STEP's lines.
maxf() { awk -v s="$1" '$1 == s && $2 > m { m = $2 } END { print m + 0 }' "$2"; }
# probe_b ROUND: one probe round of B (uncached blocks 2R and 2R+1 of 256K
# strides: no readahead of one reaches the other).
probe_b() {
	bounded python3 "$T/probe.py" "$MNT/b.img" "$T/b.data" \
		$((2 * $1 * 262144)) $(((2 * $1 + 1) * 262144))
}

# --- 1. B idle: the reference figures
probe_b 0 >"$T/b.idle"
note "B idle: $(tr '\n' ' ' <"$T/b.idle")"
assert_eq "B idle: every step ok" 0 "$(grep -vc ' ok$' "$T/b.idle")"

# --- 2. A's origin hangs; N readers block on it
echo 'hang!' >"$T/fault"
bounded python3 "$T/readers.py" "$MNT/a.img" 0 direct "$NDIRECT" "$STRIDE" \
	"$T/go" "$T/rd.direct" &
RD1=$!
bounded python3 "$T/readers.py" "$MNT/a.img" $((NDIRECT * STRIDE + 1)) \
	buffered "$NBUF" "$STRIDE" "$T/go" "$T/rd.buffered" &
RD2=$!
wait_for 30 test -e "$T/rd.direct.ready" -a -e "$T/rd.buffered.ready" ||
	fail "the readers did not start"
touch "$T/go"
t_go=$(now_ms)
threads0=$(awk '$1 == "Threads:" { print $2 }' "/proc/$IMGCACHE_PID/status")

# --- 3. B while they are blocked: rounds until the readers are done
: >"$T/b.load"
rounds=0
early=0
while kill -0 "$RD1" 2>/dev/null || kill -0 "$RD2" 2>/dev/null; do
	rounds=$((rounds + 1))
	[ "$rounds" -le 25 ] || break # B's 16 MiB hold 32 rounds
	t_r=$(now_ms)
	probe_b "$rounds" >>"$T/b.load" || echo "probe failed" >>"$T/b.load"
	# Rounds that started within origin_timeout of the go: A's readers
	# were surely all blocked then.
	[ $((t_r - t_go)) -ge "$ORIGIN_TIMEOUT_MS" ] || early=$((early + 1))
	[ "$rounds" = 2 ] && threads1=$(awk '$1 == "Threads:" { print $2 }' \
		"/proc/$IMGCACHE_PID/status")
	sleep 0.2
done
wait "$RD1" || true
wait "$RD2" || true
note "daemon threads: $threads0 at the go, ${threads1:-?} with the readers blocked"
note "B under load ($rounds rounds): max stat $(maxf stat "$T/b.load") ms, open $(maxf open_direct "$T/b.load")/$(maxf open_buffered "$T/b.load") ms, read $(maxf read_direct "$T/b.load")/$(maxf read_buffered "$T/b.load") ms (O_DIRECT/buffered)"
check "B was probed at least twice while A's readers were blocked ($early)" \
	test "$early" -ge 2
assert_eq "B under load: every step ok, bytes equal the origin's" 0 \
	"$(grep -vc ' ok$' "$T/b.load")"
for s in stat open_direct read_direct open_buffered read_buffered; do
	assert_le "B under load: every $s within $B_MAX_MS ms" \
		"$(maxf "$s" "$T/b.load")" "$B_MAX_MS"
done

# --- 4. A's readers: each EIO within origin_timeout + margin of its start
cat "$T/rd.direct" "$T/rd.buffered" >"$T/rd" 2>/dev/null || true
for m in direct buffered; do
	note "A's $m readers, ms to their answer: $(awk -v m="$m" \
		'$1 == m { print $4 - $3 }' "$T/rd" | sort -n | awk '{ v[NR] = $1 }
		END { printf "min %d, median %d, max %d", v[1], v[int((NR + 1) / 2)], v[NR] }')"
done
assert_eq "all $N readers of A answered" "$N" "$(grep -c . "$T/rd")"
assert_eq "every reader of A got EIO" "$N" "$(grep -c ' EIO$' "$T/rd")"
assert_le "each reader of A answered within origin_timeout + ${MARGIN_MS} ms" \
	"$(awk '$4 - $3 > m { m = $4 - $3 } END { print m + 0 }' "$T/rd")" \
	$((ORIGIN_TIMEOUT_MS + MARGIN_MS))
gets=$(awk '$2 == "start" && $6 == "/sw/a.img" && $7 != "-"' "$TRACE" | wc -l)
twice=$(awk '$2 == "start" && $6 == "/sw/a.img" && $7 != "-" { print $7 }' \
	"$TRACE" | sort | uniq -d | wc -l)
note "ranged GETs of A that reached the origin: $gets"
assert_eq "no range of A was asked for twice (failed fills remembered)" 0 \
	"$twice"

stop_imgcache "$MNT"
