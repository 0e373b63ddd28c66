#!/bin/bash
# shellcheck disable=SC2317 # functions are called indirectly (trap, wait_for)
# storm.sh BUILD_DIR — `make bench-storm`: a recorded boot replayed as N
# concurrent VMs on one host, through one imgcache daemon, HTTP origin on a
# local nginx.  Figures, not tests: nothing here fails on a slow figure
# (STORM_SMOKE=1, run by make check, exits 1 only when bytes differ from the
# origin's or a figure is missing).
#
# The profile: test/bench/boot.trace[.xz] with its skeleton image
# (test/bench/boot.skel.qcow2.xz and boot.datamap, written by
# record-boot.sh; without boot.datamap, qemu-img map of the skeleton gives
# the data clusters: the image's real metadata, its data clusters filled here
# with deterministic pseudo-random bytes) when shipped, else a synthetic one
# (~35 MB in ~220 ranges of mixed sizes in a 640 MiB file: the shape of a
# Debian 12 guest's boot).  STORM_TRACE=FILE and STORM_IMAGE=FILE replay
# another trace on another image.
#
# Phases, each template with an empty cache (same bytes, another name):
#   1. storm: for N in STORM_N (1 8 32), test/bench/replay -j N: N replayers
#      each read every range of the trace in recorded order, O_DIRECT, as
#      QEMU cache=none; median and p99 of their times vs N = 1; origin
#      bytes (nginx's access log) vs the trace's block-rounded working set,
#      and vs N = 1's; readahead used/fetched (xattrs, when the daemon has
#      them);
#   2. first-touch latency (test/bench/lat, 4 KiB O_DIRECT reads of distinct
#      blocks of a fresh template): idle, then while imgcache-pin pre-warms
#      ANOTHER whole template (the origin saturated);
#   3. one hung origin among the templates (test/faultsrv.py, sw/ with a
#      lasting "hang!" fault): STORM_HUNG_READERS replayers blocked on it
#      must get EIO within origin_timeout + 1 s; meanwhile first-touch
#      latency of a healthy template vs idle.
# Every replayed read is compared with the origin's bytes (replay -c).
#
# Environment:
#   STORM_N="1 8 32"      replayer counts
#   STORM_TRACE, STORM_IMAGE  the trace and the image it was recorded on
#   STORM_DIR=/var/tmp    parent of the temporary directory
#   STORM_TIMEOUT=600     limit for any one replay or reader
#   STORM_HUNG_READERS=32 replayers on the hung origin
#   STORM_ORIGIN_TIMEOUT=4  the daemon's origin_timeout, seconds
#   STORM_SMOKE=1         tiny: 16 MiB image, ~1 MiB synthetic trace, N "1 4",
#                         8 first-touch reads, 4 hung readers, 2 s timeout
#   STORM_KEEP=1          keep the temporary directory
#   STORM_PERF=DIR        perf record -g of the daemon during the largest
#                         N's cold and warm replays, into DIR/perf.TAG.data
#   STORM_TMPL_CONF=LINES  added to every nginx template's section (e.g.
#                         "origin_connections = 8"), for experiments
#   STORM_GLOBAL_CONF=LINES  added to [global] (e.g. "direct_fill = no")
BENCH_HERE=$(cd "$(dirname "$0")" && pwd) # before any cd
# shellcheck source=test/bench/figures.sh
. "$BENCH_HERE/figures.sh"
set -u -o pipefail
export LC_ALL=C

B=$(cd "${1:-.}" && pwd)
S=$(cd "$(dirname "$0")/../.." && pwd)
top_builddir=$B top_srcdir=$S
export top_builddir top_srcdir
REPLAY=$B/test/bench/replay
LAT=$B/test/bench/lat
PIN=$B/tools/imgcache-pin
SMOKE=${STORM_SMOKE:-}
BS=65536
log() { echo "storm: $*" >&2; }
for x in "$B/fs/imgcache" "$REPLAY" "$LAT" "$PIN"; do
	[ -x "$x" ] || {
		echo "storm: $x is not built (run make bench-storm)" >&2
		exit 1
	}
done
if ! [ -c /dev/fuse ] || ! command -v fusermount3 >/dev/null 2>&1; then
	echo "storm: needs /dev/fuse and fusermount3 (package fuse3)" >&2
	exit 1
fi

# lib.sh: $T, the EXIT trap that unmounts and stops what we started (by
# pid), start_imgcache, nginx_config, start_faultsrv.
TMPDIR=${STORM_DIR:-/var/tmp}
KEEP_TMP=${STORM_KEEP:-}
export TMPDIR
# shellcheck source=test/lib.sh
. "$S/test/lib.sh"
set +e
require_local_http
command -v curl >/dev/null 2>&1 || {
	echo "storm: needs curl" >&2
	exit 1
}
[ -x "$NGINX" ] || {
	echo "storm: needs nginx (apt-get install nginx-light)" >&2
	exit 1
}
T_TIMEOUT=${STORM_TIMEOUT:-600}

if [ -n "$SMOKE" ]; then
	NS=${STORM_N:-1 4}
	FT_N=8
	FT_ROUNDS=${STORM_FT_ROUNDS:-1}
	HUNG_READERS=${STORM_HUNG_READERS:-4}
	OT=${STORM_ORIGIN_TIMEOUT:-2}
else
	NS=${STORM_N:-1 8 32}
	FT_N=64
	FT_ROUNDS=${STORM_FT_ROUNDS:-3}
	HUNG_READERS=${STORM_HUNG_READERS:-32}
	OT=${STORM_ORIGIN_TIMEOUT:-4}
fi
ROWS=$T/rows.tsv
NOTES=$T/notes
REMARKS=$T/remarks
: >"$ROWS"
: >"$NOTES"
BAD=0 # bytes differed, or a figure is missing (smoke fails on it)

# ------------------------------------------------------------ results

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b > 0 ? a / b : 0 }'; }


print_table() {
	echo "imgcache bench-storm: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB RAM, kernel $(uname -r)"
	echo "profile: $PROFILE_DESC"
	echo "image: $IMAGE_DESC; block_size 64K; origin_timeout ${OT}s; cache on $(df -PT "$T" | awk 'NR == 2 { print $2 }')"
	echo "load average: $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "bytes exact: $BYTES_EXACT"
	echo
	print_figures
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
CAN_DROP=
if [ -w /proc/sys/vm/drop_caches ]; then CAN_DROP=1; fi

# ------------------------------------------------------------ profile

mkdir -p "$T/www"
IMG=$T/www/img
# rand_stream BYTES: deterministic pseudo-random bytes (the same every run).
rand_stream() {
	if command -v openssl >/dev/null 2>&1; then
		openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:imgcache-storm \
			-in /dev/zero 2>/dev/null | head -c "$1"
	else
		python3 -c 'import random, sys
r = random.Random(14); n = int(sys.argv[1]); o = sys.stdout.buffer
while n > 0:
    k = min(n, 1 << 20); o.write(r.randbytes(k)); n -= k' "$1"
	fi
}

# synth_trace SIZE NRANGES TARGET_BYTES SEED: a boot-like trace: NRANGES
# extents at scattered offsets (a boot jumps between the kernel, initrd,
# libraries, config), mixed sizes (most 4-64 KiB, some up to 2 MiB: about
# TARGET_BYTES in all), each read as consecutive requests of at most
# 128 KiB, with a few re-reads, 4 KiB aligned.
synth_trace() {
	awk -v size="$1" -v n="$2" -v want="$3" -v seed="$4" 'BEGIN {
		srand(seed); print "# imgcache-trace v1"
		print "# synthetic boot profile: " n " ranges, ~" want " bytes, file size " size
		t = 0; total = 0
		for (i = 0; i < n; i++) {
			u = rand()
			if (u < 0.55) len = 4096 * (1 + int(rand() * 4))
			else if (u < 0.85) len = 4096 * (4 + int(rand() * 28))
			else len = 4096 * (32 + int(rand() * 480))
			len = int(len * want / (n * 160000)); len = len - len % 4096
			if (len < 4096) len = 4096
			off = int(rand() * (size - len) / 4096) * 4096
			if (i > 0 && rand() < 0.05) { off = poff; len = plen }
			poff = off; plen = len
			for (d = 0; d < len; d += 131072) {
				r = len - d; if (r > 131072) r = 131072
				print t, off + d, r; t += 50 + int(rand() * 400)
			}
		}
	}'
}

PROFILE_DESC=
IMAGE_DESC=
TRACE=
shipped=$S/test/bench/boot.trace
if [ -n "${STORM_TRACE:-}" ]; then
	[ -n "${STORM_IMAGE:-}" ] || {
		echo "storm: STORM_TRACE needs STORM_IMAGE" >&2
		exit 1
	}
	TRACE=$T/trace
	case $STORM_TRACE in *.xz) xz -dc "$STORM_TRACE" >"$TRACE" ;; *) cp "$STORM_TRACE" "$TRACE" ;; esac
	ln -s "$(cd "$(dirname "$STORM_IMAGE")" && pwd)/$(basename "$STORM_IMAGE")" "$IMG" 2>/dev/null ||
		cp "$STORM_IMAGE" "$IMG"
	PROFILE_DESC="$STORM_TRACE"
	IMAGE_DESC="$STORM_IMAGE"
elif [ -z "$SMOKE" ] && { [ -e "$shipped" ] || [ -e "$shipped.xz" ]; } &&
	[ -e "$S/test/bench/boot.skel.qcow2.xz" ]; then
	TRACE=$T/trace
	if [ -e "$shipped.xz" ]; then xz -dc "$shipped.xz" >"$TRACE"; else cp "$shipped" "$TRACE"; fi
	log "expanding the skeleton image, filling its data clusters"
	xz -dc "$S/test/bench/boot.skel.qcow2.xz" >"$IMG" || exit 1
	isz=$(stat -c %s "$IMG")
	rand_stream "$isz" >"$T/rand" # (openssl ends on SIGPIPE: check the size)
	[ "$(stat -c %s "$T/rand")" = "$isz" ] || exit 1
	# boot.datamap: "HOST_OFFSET LENGTH" of every data cluster run; without
	# it, the runs qemu-img map finds in the skeleton (its zeroed clusters
	# are still allocated: their L2 entries are the real image's).
	DATAMAP=$S/test/bench/boot.datamap
	if [ ! -e "$DATAMAP" ]; then
		DATAMAP=$T/datamap
		command -v qemu-img >/dev/null 2>&1 || {
			echo "storm: no test/bench/boot.datamap, and no qemu-img to make one (apt-get install qemu-utils)" >&2
			exit 1
		}
		qemu-img map --output=json -f qcow2 "$IMG" | python3 -c 'import json, sys
for e in json.load(sys.stdin):
    if e.get("data") and "offset" in e:
        print(e["offset"], e["length"])' >"$DATAMAP" || exit 1
	fi
	python3 - "$IMG" "$T/rand" "$DATAMAP" <<'PY' || exit 1
import sys
img, rnd, m = sys.argv[1:4]
with open(img, "r+b") as f, open(rnd, "rb") as r, open(m) as mp:
    for line in mp:
        if not line.strip() or line.startswith("#"):
            continue
        off, ln = (int(x) for x in line.split()[:2])
        while ln > 0:
            k = min(ln, 8 << 20)
            r.seek(off); f.seek(off); f.write(r.read(k))
            off += k; ln -= k
PY
	rm -f "$T/rand"
	PROFILE_DESC="shipped boot trace (test/bench/boot.trace: template $(sed -n 's/^# template //p' "$TRACE" | head -n 1))"
	IMAGE_DESC="skeleton qcow2, $(stat -c %s "$IMG") bytes, data clusters pseudo-random"
else
	if [ -n "$SMOKE" ]; then
		isz=$((16 * 1048576)) nr=20 want=$((1048576))
	else
		isz=$((640 * 1048576)) nr=220 want=$((35 * 1000 * 1000))
	fi
	log "generating a $((isz >> 20)) MiB image and a synthetic trace"
	rand_stream "$isz" >"$IMG"
	TRACE=$T/trace
	synth_trace "$isz" "$nr" "$want" 14 >"$TRACE"
	PROFILE_DESC="synthetic ($nr ranges; no shipped trace in test/bench)"
	IMAGE_DESC="$((isz >> 20)) MiB of pseudo-random bytes"
fi
ISZ=$(stat -L -c %s "$IMG")
# Working set of one boot: the trace's bytes and its blocks (block-rounded,
# the last block as long as the file allows).
read -r TR_READS TR_BYTES WS <<<"$(awk -v bs=$BS -v size="$ISZ" '!/^#/ && NF == 3 {
	n++; b += $3; for (k = int($2 / bs); k <= int(($2 + $3 - 1) / bs); k++) s[k] = 1 }
	END { for (k in s) { e = (k + 1) * bs; w += (e > size ? size - k * bs : bs) }
		print n + 0, b + 0, w + 0 }' "$TRACE")"
[ "$TR_READS" -gt 0 ] || {
	echo "storm: the trace holds no reads" >&2
	exit 1
}
PROFILE_DESC="$PROFILE_DESC; $TR_READS reads, $TR_BYTES bytes, working set $WS bytes at 64K blocks"
mib() { fmt "$(awk -v b="$1" 'BEGIN { print b / 1048576 }')" 1; }

# ------------------------------------------------------------ origins

# Every template is its own name for the same bytes (hard links: one page
# cache for nginx), each with an empty cache.
NAMES=""
for n in $NS; do NAMES="$NAMES s$n"; done
for i in $(seq "$FT_ROUNDS"); do NAMES="$NAMES ft-idle$i ft-warm$i pw$i"; done
NAMES="$NAMES ft-hung"
for nm in $NAMES; do
	[ "${nm#pw}" != "$nm" ] && [ -n "$SMOKE" ] && continue
	ln "$IMG" "$T/www/$nm.img" 2>/dev/null || ln -s "$IMG" "$T/www/$nm.img"
done
# Smoke: the image is too small for a pre-warm to outlast 8 reads; a
# sparse 256 MiB one does (zeros: still fetched, though never written).
PW_SIZE=$ISZ
if [ -n "$SMOKE" ]; then
	PW_SIZE=$((256 * 1048576))
	for i in $(seq "$FT_ROUNDS"); do truncate -s "$PW_SIZE" "$T/www/pw$i.img"; done
fi
PORT=
for _try in 1 2 3; do
	PORT=$(free_port)
	nginx_config "$PORT" "log_format t '\$request|\$status|\$body_bytes_sent|\$http_range';
    access_log $T/nginx/access.log t; sendfile on;"
	"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
	NGINX_PID=$!
	_register "$NGINX_PID" -
	wait_for 10 curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/pw1.img" && break
	stop_pid "$NGINX_PID"
	PORT=
done
[ -n "$PORT" ] || {
	echo "storm: nginx did not start: $(tail -n 1 "$T/nginx/error.log")" >&2
	exit 1
}
NURL=http://127.0.0.1:$PORT
# served FROM_LINE NAME: body bytes and requests nginx answered for NAME.
served() {
	awk -F'|' -v from="$1" -v p="GET /$2 " 'NR >= from && index($1, p) == 1 {
		s += $3; n++ } END { printf "%d %d\n", s, n }' "$T/nginx/access.log"
}
loglines() { wc -l <"$T/nginx/access.log"; }

# The hung origin: faultsrv sw/ (HEAD answers, so the template is served),
# its ranged GETs hanging once the fault file says "hang!".
# The whole image: the trace's reads must all be misses there, none past
# its end.
start_faultsrv H "$IMG" --fault-file "$T/fault"
HURL=$URL

CONF=$T/imgcache.conf
{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	printf 'origin_timeout = %ss\nrevalidate = 1h\n' "$OT"
	[ -z "${STORM_GLOBAL_CONF:-}" ] || printf '%s\n' "$STORM_GLOBAL_CONF"
	for nm in $NAMES; do
		printf '\n[template %s.img]\norigin = %s/%s.img\n' "$nm" "$NURL" "$nm"
		[ -z "${STORM_TMPL_CONF:-}" ] || printf '%s\n' "$STORM_TMPL_CONF"
	done
	printf '\n[template hung.img]\norigin = %s/sw/hung.img\n' "$HURL"
} >"$CONF"
start_imgcache "$CONF" "$T/mnt"
wait_for 10 test -S "$CACHE/ctl.sock" || {
	echo "storm: no control socket" >&2
	exit 1
}
M=$T/mnt
IC_PID=$IMGCACHE_PID

fresh_origin() {
	if [ -n "$CAN_DROP" ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
	cat "$IMG" >/dev/null
}

# xattr FILE NAME: a user.imgcache.NAME value, "" when absent.
xattr() {
	getfattr --only-values -n "user.imgcache.$2" "$1" 2>/dev/null ||
		python3 -c 'import os, sys
try: print(os.getxattr(sys.argv[1], "user.imgcache." + sys.argv[2]).decode())
except OSError: pass' "$1" "$2" 2>/dev/null
}

BYTES_EXACT="yes: every read of every replayer equal to the origin's bytes (replay -c)"
exact_failed() {
	BYTES_EXACT="NO: $1"
	BAD=1
}

# ------------------------------------------------------------ 1. storm

# proc_cpu PID: utime + stime in seconds.
proc_cpu() {
	sed 's/^.*) //' "/proc/$1/stat" |
		awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($12 + $13) / hz }'
}
# tree_cpu PID: utime + stime of PID and its children, seconds (nginx:
# with master_process off, as lib.sh's nginx_config runs it, it has no
# workers and serves in PID itself).
tree_cpu() {
	awk -v p="$1" -v hz="$(getconf CLK_TCK)" '{ pid = $1; sub(/^.*\) /, "") }
		pid == p || $2 == p { s += $12 + $13 } END { printf "%.2f", s / hz }' /proc/[0-9]*/stat 2>/dev/null
}
# self_kids_cpu VAR: CPU seconds of this shell's waited-for children
# (bash's times, the replayers through timeout) into VAR; not in a
# subshell, whose own times start at zero.
self_kids_cpu() {
	times >"$T/times"
	printf -v "$1" '%s' "$(awk 'NR == 2 { split($1, u, "m"); split($2, s, "m")
		printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$T/times")"
}
# replay_phase TAG N FILE: N replayers of the trace on FILE; the machine's
# busy/iowait/idle split and the daemon's CPU seconds meanwhile in the
# remarks, as "TAG: ...".  Sets RC, SPLIT ("BUSY IOWAIT IDLE") and DCPU.
replay_phase() {
	local tag=$1 n=$2 f=$3 s0 s1 c0 c1 wall0 wall1 r0 r1 n0 n1
	RC=0
	local perf=
	if [ -n "${STORM_PERF:-}" ] && [ "$n" = "${NS##* }" ]; then
		mkdir -p "$STORM_PERF"
		# Until its sleep is killed: a signal to perf itself, started in
		# the background, left its data unfinished.
		perf record -q -g -o "$STORM_PERF/perf.$tag.data" -p "$IC_PID" \
			-- sleep "$T_TIMEOUT" >"$STORM_PERF/perf.$tag.log" 2>&1 &
		perf=$!
		wait_for 5 test -s "$STORM_PERF/perf.$tag.data"
	fi
	c0=$(proc_cpu "$IC_PID")
	n0=$(tree_cpu "$NGINX_PID")
	self_kids_cpu r0
	s0=$(sys_cpu)
	wall0=$EPOCHREALTIME
	bounded "$REPLAY" -j "$n" -l "$T/lat.$tag" -c "$IMG" "$f" "$TRACE" \
		>"$T/replay.$tag" 2>"$T/replay.$tag.err" || RC=$?
	wall1=$EPOCHREALTIME
	s1=$(sys_cpu)
	self_kids_cpu r1
	n1=$(tree_cpu "$NGINX_PID")
	c1=$(proc_cpu "$IC_PID")
	if [ -n "$perf" ]; then
		kill "$(pgrep -P "$perf" -x sleep)"
		wait "$perf"
	fi
	SPLIT=$(cpu_split "$s0" "$s1")
	DCPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
	RCPU=$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.2f", b - a }')
	NCPU=$(awk -v a="$n0" -v b="$n1" 'BEGIN { printf "%.2f", b - a }')
	local busy iow idle
	read -r busy iow idle <<<"$SPLIT"
	OCPU=$(awk -v b="$busy" -v d="$DCPU" -v r="$RCPU" -v x="$NCPU" 'BEGIN { o = b - d - r - x; printf "%.2f", (o > 0 ? o : 0) }')
	remark "$tag (N=$n): $(awk -v a="$wall0" -v b="$wall1" 'BEGIN { printf "%.2f", b - a }') s wall; the machine's $(nproc) CPUs busy $busy, iowait $iow, idle $idle CPU-s (/proc/stat): the daemon $DCPU, the replayers $RCPU, nginx $NCPU, everything else (other work on the machine) $OCPU."
}

MED1="" BYTES1="" MEDCOLD=""
for n in $NS; do
	log "storm: N = $n concurrent replays of the trace"
	fresh_origin
	from=$(($(loglines) + 1))
	replay_phase "s$n" "$n" "$M/s$n.img"
	rc=$RC
	MEDCOLD=""
	fig="storm N=$n replay time"
	if [ "$rc" != 0 ]; then
		why="replay exited $rc: $(head -n 1 "$T/replay.s$n.err")"
		grep -q "differ" "$T/replay.s$n.err" && exact_failed "N=$n: $why"
		na "$fig, median" ms - - - "$why"
		na "$fig, p99" ms - - - "$why"
		na "storm N=$n origin bytes" MiB - - - "$why"
		BAD=1
		continue
	fi
	read -r med p99 <<<"$(awk '/^median_us/ { print $2, $4 }' "$T/replay.s$n")"
	med=$(fmt "$(awk -v v="$med" 'BEGIN { print v / 1000 }')" 1)
	p99=$(fmt "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" 1)
	MEDCOLD=$med
	read -r busy iow idle <<<"$SPLIT"
	row "storm N=$n: machine busy / CPU-s available" "$busy" CPU-s "busy+iowait+idle" \
		"$(awk -v a="$busy" -v b="$iow" -v c="$idle" 'BEGIN { printf "%.2f", a + b + c }')" -
	row "storm N=$n: machine iowait" "$iow" CPU-s - - -
	row "storm N=$n: daemon CPU" "$DCPU" CPU-s "machine busy" "$busy" -
	read -r obytes oreqs <<<"$(served "$from" "s$n.img")"
	if [ -z "$MED1" ]; then
		MED1=$med BYTES1=$obytes
		row "$fig, median" "$med" ms - - -
		row "$fig, p99" "$p99" ms "N=$n median" "$med" -
	else
		tgt=-
		[ "$n" -lt 32 ] || tgt="<=1.5"
		row "$fig, median" "$med" ms "N=${NS%% *} median" "$MED1" "$tgt"
		row "$fig, p99" "$p99" ms "N=${NS%% *} median" "$MED1" -
	fi
	row "storm N=$n origin bytes / working set" "$(mib "$obytes")" MiB \
		"block-rounded working set" "$(mib "$WS")" "<=1.3"
	if [ "$n" != "${NS%% *}" ]; then
		row "storm N=$n origin bytes / N=${NS%% *}'s" "$(mib "$obytes")" MiB \
			"N=${NS%% *} origin bytes" "$(mib "$BYTES1")" "<=1.05"
	fi
	remark "N=$n: $oreqs GETs to nginx, mean $(awk -v b="$obytes" -v n="$oreqs" 'BEGIN { printf "%.0f", n ? b / n / 1024 : 0 }') KiB; read latency p50/p99 $(sort -n "$T/lat.s$n" | awk '{ v[NR] = $1 } END { i = int(NR * 0.99 + 0.999); if (i < 1) i = 1; printf "%d/%d", v[int((NR + 1) / 2)], v[i] }') us."
	fetched=$(xattr "$M/s$n.img" readahead_fetched)
	used=$(xattr "$M/s$n.img" readahead_used)
	if isnum "${fetched:-x}" && isnum "${used:-x}"; then
		if [ "$fetched" -gt 0 ]; then
			row "storm N=$n readahead read / fetched" "$(mib "$used")" MiB \
				"readahead fetched" "$(mib "$fetched")" -
		else
			row "storm N=$n readahead read / fetched" 0 MiB "readahead fetched" 0 -
		fi
	else
		na "storm N=$n readahead read / fetched" MiB - - - \
			"the daemon has no user.imgcache.readahead_fetched / readahead_used xattrs"
	fi
done

# Warm: the last storm's template replayed again, every block now
# cached (one replay first, so that the data file is in the page cache):
# the floor set by copying the bytes through FUSE on this machine's CPUs.
# A cold storm near its warm one costs nothing beyond that.
NL=${NS##* }
if [ -n "$MEDCOLD" ]; then
	log "storm: warm N = 1 and N = $NL replays (everything cached)"
	replay_phase "warm-prime" 1 "$M/s$NL.img"
	WMED1=""
	for n in 1 "$NL"; do
		replay_phase "warm$n" "$n" "$M/s$NL.img"
		if [ "$RC" != 0 ]; then
			na "storm N=$n warm replay time, median" ms - - - \
				"replay exited $RC: $(head -n 1 "$T/replay.warm$n.err")"
			grep -q "differ" "$T/replay.warm$n.err" && exact_failed "warm N=$n"
			BAD=1
			continue
		fi
		wmed=$(fmt "$(awk '/^median_us/ { print $2 / 1000 }' "$T/replay.warm$n")" 1)
		read -r busy iow idle <<<"$SPLIT"
		if [ "$n" = 1 ]; then
			WMED1=$wmed
			row "storm N=1 warm replay time, median" "$wmed" ms "N=1 cold median" "$MED1" -
		else
			row "storm N=$n warm replay time, median" "$wmed" ms "N=1 warm median" "${WMED1:-n/a}" -
			row "storm N=$n cold / warm median" "$MEDCOLD" ms "N=$n warm median" "$wmed" -
			# A cold storm cannot end before the same storm with nothing
			# to fetch: warm N / cold N=1 is the floor of the <=1.5x
			# target's ratio, measured in this run.
			row "storm N=$n warm median / N=1 cold median (the target's floor)" "$wmed" ms "N=1 cold median" "${MED1:-n/a}" -
			if isnum "${MED1:-}" && awk -v w="$wmed" -v c="$MED1" 'BEGIN { exit !(c > 0 && w / c > 1.5) }'; then
				remark "N=$n's <=1.5x target is below this run's floor: with every block cached and nothing fetched, N=$n replays take $(awk -v w="$wmed" -v c="$MED1" 'BEGIN { printf "%.2f", w / c }')x N=1's cold replay, the machine busy $busy of $(awk -v a="$busy" -v b="$iow" -v c="$idle" 'BEGIN { printf "%.2f", a + b + c }') CPU-s."
			fi
		fi
		row "storm N=$n warm: machine busy / CPU-s available" "$busy" CPU-s "busy+iowait+idle" \
			"$(awk -v a="$busy" -v b="$iow" -v c="$idle" 'BEGIN { printf "%.2f", a + b + c }')" -
		row "storm N=$n warm: daemon CPU" "$DCPU" CPU-s "machine busy" "$busy" -
	done
fi

# ------------------------------------------------------------ 2. pre-warm

# ft NAME: first-touch latency of FT_N reads on NAME, every latency (us)
# in $T/ft.NAME; sets FT_P50, FT_P99 (us) or returns 1 with WHY.
ft() {
	local out
	if ! out=$(bounded "$LAT" -v -n "$FT_N" -s "${FT_SEED:-7}" "$M/$1.img" 2>"$T/ft.$1"); then
		WHY="lat failed: $(tail -n 1 "$T/ft.$1")"
		return 1
	fi
	FT_P50=$(sed -n 's/.*median_us=\([0-9]*\).*/\1/p' <<<"$out")
	FT_P99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$out")
}
# pooled FILE...: "P50 P99" (nearest rank) of the latencies in FILEs.
pooled() {
	cat "$@" | sort -n | awk '{ v[NR] = $1 } END {
		i = int(NR * 0.99 + 0.999); if (i < 1) i = 1
		printf "%d %d\n", v[int((NR + 1) / 2)], v[i] }'
}

# Rounds alternate idle and pre-warm (each on fresh templates, with a
# pre-warm of its own), so that the machine's drift hits both alike; the
# rows pool every round's reads, the notes give each round.
IDLE_FILES="" WARM_FILES="" FT_OK=1 PW_BYTES=0 PW_GETS=0 ROUND_NOTES=""
for i in $(seq "$FT_ROUNDS"); do
	FT_SEED=$((6 + i))
	log "first touch, round $i of $FT_ROUNDS: idle"
	fresh_origin
	if ! ft "ft-idle$i"; then
		FT_OK=0
		break
	fi
	r_idle="$FT_P50/$FT_P99"
	IDLE_FILES="$IDLE_FILES $T/ft.ft-idle$i"
	log "first touch, round $i: while pre-warming another template"
	from=$(($(loglines) + 1))
	"$PIN" --cache-dir "$CACHE" --wait "pw$i.img" "0+$PW_SIZE" >"$T/pw$i.out" 2>&1 &
	PW=$!
	# The pre-warm is under way once nginx has answered some of it.
	pw_started() { [ "$(served "$from" "pw$i.img" | cut -d' ' -f2)" -ge 4 ]; }
	wait_for 30 pw_started ||
		remark "round $i: the pre-warm had not reached nginx within 30 s."
	if ! ft "ft-warm$i"; then
		FT_OK=0
		wait "$PW"
		break
	fi
	if ! kill -0 "$PW" 2>/dev/null; then
		WHY="the pre-warm ended before the latency run did (origin not saturated throughout)"
		[ -n "$SMOKE" ] || FT_OK=0
	fi
	WARM_FILES="$WARM_FILES $T/ft.ft-warm$i"
	ROUND_NOTES="$ROUND_NOTES round $i idle $r_idle, pre-warm $FT_P50/$FT_P99 ($(awk -v a="${r_idle##*/}" -v b="$FT_P99" 'BEGIN { printf "%.2f", (a > 0 ? b / a : 0) }')x);"
	wait "$PW" || remark "round $i: the pre-warm failed: $(tail -n 1 "$T/pw$i.out")"
	read -r pwb pwn <<<"$(served "$from" "pw$i.img")"
	PW_BYTES=$((PW_BYTES + pwb)) PW_GETS=$((PW_GETS + pwn))
done
NFT=$((FT_N * FT_ROUNDS))
IDLE50="" IDLE99=""
if [ -n "$IDLE_FILES" ]; then
	# shellcheck disable=SC2086 # file lists
	read -r IDLE50 IDLE99 <<<"$(pooled $IDLE_FILES)"
	row "first-touch 4K, idle, p50 of $NFT" "$IDLE50" us - - -
	row "first-touch 4K, idle, p99 of $NFT" "$IDLE99" us - - -
else
	na "first-touch 4K, idle, p50 of $NFT" us - - - "$WHY"
	BAD=1
fi
if [ "$FT_OK" = 1 ] && [ -n "$WARM_FILES" ]; then
	# shellcheck disable=SC2086 # file lists
	read -r w50 w99 <<<"$(pooled $WARM_FILES)"
	row "first-touch 4K, during pre-warm, p50" "$w50" us "idle p50" "${IDLE50:-n/a}" -
	row "first-touch 4K, during pre-warm, p99" "$w99" us "idle p99" "${IDLE99:-n/a}" "<=1.5"
else
	na "first-touch 4K, during pre-warm, p50" us "idle p50" "${IDLE50:-n/a}" - "$WHY"
	na "first-touch 4K, during pre-warm, p99" us "idle p99" "${IDLE99:-n/a}" "<=1.5" "$WHY"
	BAD=1
fi
remark "first touch p50/p99 (us) per round:$ROUND_NOTES"
remark "pre-warms: $(mib "$PW_BYTES") MiB in $PW_GETS GETs."

# ------------------------------------------------------------ 3. hung origin

log "one hung origin: $HUNG_READERS replayers blocked on it"
echo 'hang!' >"$T/fault"
t0=$EPOCHREALTIME
bounded "$REPLAY" -j "$HUNG_READERS" "$M/hung.img" "$TRACE" >"$T/replay.hung" \
	2>"$T/replay.hung.err" &
HR=$!
# Blocked once faultsrv has taken a ranged GET for the hung template.
wait_for 10 test -s "$T/fault.taken" || remark "no ranged GET reached the hung origin within 10 s."
if ft ft-hung; then
	row "first-touch 4K, one origin hung, p50" "$FT_P50" us "idle p50" "${IDLE50:-n/a}" -
	row "first-touch 4K, one origin hung, p99" "$FT_P99" us "idle p99" "${IDLE99:-n/a}" "<=1.5"
else
	na "first-touch 4K, one origin hung, p99" us - - "<=1.5" "$WHY"
	BAD=1
fi
rc=0
wait "$HR" || rc=$?
t1=$EPOCHREALTIME
eio=$(grep -c "Input/output error" "$T/replay.hung.err")
slow=$(awk '/^replayer/ { if ($4 > m) m = $4 } END { printf "%.2f", m / 1e6 }' "$T/replay.hung")
if [ "$rc" = 1 ] && isnum "$slow" && [ "$eio" -gt 0 ]; then
	row "hung origin: slowest reader's EIO" "$slow" s "origin_timeout + 1 s" "$((OT + 1))" "<=1"
	row "hung origin: readers with EIO" "$eio" readers "readers" "$HUNG_READERS" ">=1"
else
	na "hung origin: slowest reader's EIO" s "origin_timeout + 1 s" "$((OT + 1))" "<=1" \
		"replay on the hung origin exited $rc: $(head -n 1 "$T/replay.hung.err")"
	BAD=1
fi
remark "hung phase: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s from the first blocked reader to the last EIO."
rm -f "$T/fault"

# ------------------------------------------------------------ end

if kill -0 "$IC_PID" 2>/dev/null; then
	remark "daemon: VmHWM $(awk '/^VmHWM:/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$IC_PID/status"), CPU $(sed 's/^.*) //' "/proc/$IC_PID/stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f s", ($12 + $13) / hz }') for the whole run."
fi
stop_imgcache "$M"
stop_pid "$NGINX_PID"
stop_faultsrv H
remark "each replayer reads every range of the trace in recorded order, back to back (no think time), O_DIRECT (buffered where not 512-aligned); all start together; replay time = from the start to its last read."
print_table
if [ -n "${STORM_MD:-}" ]; then
	{
		echo "| figure | value | unit | reference | ratio | target |"
		echo "|---|---:|---|---|---:|---|"
		awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$ROWS"
	} >"$STORM_MD"
fi
if [ -n "$SMOKE" ] && [ "$BAD" != 0 ]; then
	exit 1
fi
exit 0
