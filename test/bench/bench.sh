#!/bin/bash
# shellcheck disable=SC2317 # functions are called indirectly (meas, trap)
# bench.sh BUILD_DIR — `make bench`: imgcache measured side by side with its
# references in one run, each figure with its ratio to its reference.
#
# References: a local read of the template file (cold after dropping the
# page cache, and warm), curl's download of the same URL from a local nginx,
# one block-sized Range GET, and libfuse's passthrough_ll example (compiled
# here from /usr/share/doc/libfuse3-dev/examples) over the same file,
# buffered and direct_io: the FUSE ceiling.  Then imgcache (HTTP and file
# origins), and the peers httpdirfs and rclone when installed.
#
# It builds nothing of the project (make bench builds it first), starts its
# own nginx and FUSE mounts under a private temporary directory, and stops
# and unmounts them on exit, by pid and by mount point.
#
# Environment:
#   BENCH_SIZE=1G         template size (bytes, or with K/M/G suffix)
#   BENCH_DIR=/var/tmp    parent of the temporary directory
#   BENCH_FIO_SECONDS=10  run time of each fio job
#   BENCH_SPARSE_SIZE=100G  size of the sparse file-origin template that is
#                         mounted alongside (RSS with a large template); 0: none
#   BENCH_MD=PATH         also write the table as markdown to PATH
#   BENCH_PEERS=1         apt-get install httpdirfs and rclone when missing;
#                         0: skip the peers (default: measure those installed)
#   BENCH_TIMEOUT=300     limit for any one command reading through a mount
#   BENCH_KEEP=1          keep the temporary directory (logs, configs)
#   BENCH_TMPFS_ROUNDS=3  rounds of each kind of the cold read, cache on tmpfs
#
# Output: a header naming the machine, then one aligned table on stdout
# (figure, value, unit, reference, ratio, target), then the figures that
# could not be taken and why.  Progress goes to stderr.  Exits 0 when the
# table was printed (rows that could not be measured say why), 1 when the
# bench could not run at all.
BENCH_HERE=$(cd "$(dirname "$0")" && pwd) # before any cd
# shellcheck source=test/bench/figures.sh
. "$BENCH_HERE/figures.sh"
set -u -o pipefail
export LC_ALL=C
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY \
	no_proxy NO_PROXY

B=$(cd "${1:-.}" && pwd)
IMGCACHE=$B/fs/imgcache
LAT=$B/test/bench/lat
EXAMPLES=${BENCH_FUSE_EXAMPLES:-/usr/share/doc/libfuse3-dev/examples}
FIO_SECONDS=${BENCH_FIO_SECONDS:-10}
TLIMIT=${BENCH_TIMEOUT:-300}
BS=65536

log() { echo "bench: $*" >&2; }

# size_bytes SPEC: 16M -> 16777216
size_bytes() {
	local n=${1%[KkMmGgTt]} m=1
	case $1 in
	*[Kk]) m=1024 ;;
	*[Mm]) m=1048576 ;;
	*[Gg]) m=1073741824 ;;
	*[Tt]) m=1099511627776 ;;
	esac
	case $n in
	'' | *[!0-9]*) return 1 ;;
	esac
	echo $((n * m))
}

SIZE_SPEC=${BENCH_SIZE:-1G}
SIZE=$(size_bytes "$SIZE_SPEC") || {
	echo "bench: bad BENCH_SIZE '$SIZE_SPEC'" >&2
	exit 1
}
SPARSE=$(size_bytes "${BENCH_SPARSE_SIZE:-100G}") || {
	echo "bench: bad BENCH_SPARSE_SIZE '${BENCH_SPARSE_SIZE:-}'" >&2
	exit 1
}
if [ "$SIZE" -lt $((4 * 1048576)) ]; then
	echo "bench: BENCH_SIZE must be at least 4M" >&2
	exit 1
fi
case $FIO_SECONDS in '' | *[!0-9]* | 0)
	echo "bench: bad BENCH_FIO_SECONDS '$FIO_SECONDS'" >&2
	exit 1
	;;
esac
for x in "$IMGCACHE" "$LAT"; do
	[ -x "$x" ] || {
		echo "bench: $x is not built (run make bench)" >&2
		exit 1
	}
done

W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/imgcache-bench.XXXXXX") || exit 1
W=$(cd "$W" && pwd -P) # canonical, as /proc/self/mountinfo shows it
ROWS=$W/rows.tsv       # figure, value, unit, reference, ratio, target
NOTES=$W/notes         # "figure: why it was not measured"
REMARKS=$W/remarks     # free notes (remark)
: >"$ROWS"
: >"$NOTES"
MOUNTS=() # mount points we mounted, in order
PIDS=()   # processes we started

# ------------------------------------------------------------ processes

is_mounted() {
	awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

pid_alive() {
	[ -d "/proc/$1" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

# wait_exit PID SECONDS
wait_exit() {
	local n=$(($2 * 20))
	while pid_alive "$1"; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.05
	done
	return 0
}

stop_pid() {
	pid_alive "$1" || return 0
	kill -TERM "$1" 2>/dev/null
	wait_exit "$1" 5 || kill -KILL "$1" 2>/dev/null
	wait_exit "$1" 2 || true
}

unmount() {
	is_mounted "$1" || return 0
	fusermount3 -u "$1" 2>/dev/null || fusermount3 -uz "$1" 2>/dev/null ||
		umount -l "$1" 2>/dev/null
}

cleanup() {
	local rc=$? i
	set +e
	trap - EXIT INT TERM HUP
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		unmount "${MOUNTS[i]}"
	done
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		# FUSE daemons exit by themselves once unmounted.
		wait_exit "${PIDS[i]}" 5 || stop_pid "${PIDS[i]}"
	done
	if awk -v t="$W/" 'index($5, t) == 1 { f = 1 } END { exit !f }' \
		/proc/self/mountinfo; then
		log "mounts left under $W; not removing it"
	elif [ -n "${BENCH_KEEP:-}" ]; then
		log "work directory kept: $W"
	else
		rm -rf --one-file-system "$W"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# bounded CMD...: CMD with the per-command time limit.
bounded() { timeout -k 5 "$TLIMIT" "$@"; }

# log_why LOG: the line of LOG that best says why a daemon failed.
log_why() {
	grep -m 1 -iE 'error|fatal|fail|cannot|denied' "$1" 2>/dev/null ||
		tail -n 1 "$1" 2>/dev/null
}

# start_fs NAME MNT LOG CMD...: run a FUSE daemon in the foreground (in the
# background of this shell), wait up to 15 s for MNT to answer.  Sets
# FS_PID.  Returns 1 (WHY set) when it exits or does not mount.
start_fs() {
	local name=$1 mnt=$2 logf=$3 n=300
	shift 3
	mkdir -p "$mnt"
	"$@" >"$logf" 2>&1 &
	FS_PID=$!
	PIDS+=("$FS_PID")
	MOUNTS+=("$mnt")
	while :; do
		if is_mounted "$mnt" && timeout -k 2 10 mountpoint -q "$mnt"; then
			return 0
		fi
		if ! pid_alive "$FS_PID"; then
			WHY="$name exited before mounting: $(log_why "$logf")"
			return 1
		fi
		n=$((n - 1))
		if [ "$n" -le 0 ]; then
			WHY="$name did not mount within 15 s: $(log_why "$logf")"
			stop_pid "$FS_PID"
			unmount "$mnt"
			return 1
		fi
		sleep 0.05
	done
}

# stop_fs MNT PID: unmount and wait (bounded) for the daemon to exit.
stop_fs() {
	unmount "$1"
	wait_exit "$2" 10 || stop_pid "$2"
}

# ------------------------------------------------------------ results





# val_or_na FIGURE UNIT REF_NAME REF_VALUE TARGET: after a measurement
# command: its $RESULT as a row if it succeeded ($? = 0), else n/a with $WHY.
val_or_na() {
	if [ "$MEAS_RC" = 0 ]; then
		row "$1" "$RESULT" "$2" "$3" "$4" "$5"
	else
		na "$1" "$2" "$3" "$4" "$5" "$WHY"
	fi
}

# meas CMD...: run a measurement (sets RESULT or WHY, and MEAS_RC).
meas() {
	RESULT=n/a
	WHY="failed"
	MEAS_RC=0
	"$@" || MEAS_RC=$?
	[ "$MEAS_RC" = 0 ] || RESULT=n/a
}

print_table() {
	echo "imgcache bench: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $(nproc) CPUs, $CPU_MODEL, $MEM_GIB GiB RAM, kernel $(uname -r)"
	echo "SIZE: $SIZE_SPEC ($SIZE bytes, incompressible), block_size 64K, temp dir on $FS_DESC"
	echo "fio: ${FIO_ENGINE:-n/a}, 4 KiB random reads, $FIO_SECONDS s per job"
	echo "load average: $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine skews the figures)"
	echo "MiB/s and IOPS: higher is better; us, MiB, s: lower is better; ratio = value / reference"
	echo
	print_figures
}

write_md() {
	{
		echo "imgcache bench, $(date -u '+%Y-%m-%d'): $(nproc) CPUs ($CPU_MODEL), $MEM_GIB GiB RAM, kernel $(uname -r); SIZE $SIZE_SPEC; fio ${FIO_ENGINE:-n/a}, $FIO_SECONDS s per job; load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
		echo
		echo "| figure | value | unit | reference | ratio | target |"
		echo "|---|---:|---|---|---:|---|"
		awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$ROWS"
		if [ -s "$NOTES" ]; then
			echo
			echo "Not measured:"
			echo
			sed 's/^/- /' "$NOTES"
		fi
		if [ -s "$W/remarks" ]; then
			echo
			sed 's/^/- /' "$W/remarks"
		fi
	} >"$1"
}


# ------------------------------------------------------------ machine

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
: "${CPU_MODEL:=unknown CPU}"
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
FS_DESC=$(df -PT "$W" | awk 'NR == 2 { print $2 " (" $1 ")" }')

CAN_DROP=
if [ -w /proc/sys/vm/drop_caches ] && sync &&
	echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
	CAN_DROP=1
fi
drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}
NO_DROP_WHY="cannot drop the page cache (needs root: /proc/sys/vm/drop_caches)"

# warm FILE: read FILE into the page cache.
warm() { bounded cat "$1" >/dev/null; }

# fresh_origin: the page cache dropped, then the origin file read into it:
# every "origin in the page cache" row starts from the same memory state.
# (On this kind of VM a read that follows another 1 GiB read, without a
# drop between, allocates pages the guest never touched before, and ran at
# half the speed.)
fresh_origin() {
	[ -z "$CAN_DROP" ] || drop_caches
	warm "$W/www/t.img"
}

# ------------------------------------------------------------ measurements

# mibps BYTES T0 T1 (EPOCHREALTIME stamps)
mibps() {
	awk -v b="$1" -v a="$2" -v z="$3" 'BEGIN { t = z - a; if (t <= 0) t = 1e-6
		printf "%.1f", b / 1048576 / t }'
}

# seq_read FILE [IFLAG]: sequential read with dd bs=1M; RESULT = MiB/s.
seq_read() {
	local f=$1 t0 t1 out rc=0 bytes
	t0=$EPOCHREALTIME
	out=$(bounded dd if="$f" of=/dev/null bs=1M ${2:+iflag=$2} 2>&1) || rc=$?
	t1=$EPOCHREALTIME
	if [ "$rc" != 0 ]; then
		if [ "$rc" = 124 ]; then
			WHY="dd timed out after $TLIMIT s"
		else
			WHY="dd failed: $(tail -n 1 <<<"$out")"
		fi
		return 1
	fi
	bytes=$(sed -n 's/^\([0-9][0-9]*\) bytes.*/\1/p' <<<"$out" | tail -n 1)
	if [ "$bytes" != "$SIZE" ]; then
		WHY="dd read ${bytes:-?} of $SIZE bytes"
		return 1
	fi
	RESULT=$(mibps "$bytes" "$t0" "$t1")
}

# cold_read FILE [IFLAG]: seq_read after dropping the page cache.
cold_read() {
	if [ -z "$CAN_DROP" ]; then
		WHY=$NO_DROP_WHY
		return 1
	fi
	drop_caches
	seq_read "$@"
}

# warm_read FILE [IFLAG]: read FILE once, then measure a second read.
warm_read() {
	seq_read "$@" || return 1
	seq_read "$@"
}

FIO_ENGINE=
fio_probe() {
	local e
	if ! command -v fio >/dev/null 2>&1; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
			log "installing fio (apt-get)"
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q fio \
				>"$W/apt-fio.log" 2>&1 || true
		fi
	fi
	if ! command -v fio >/dev/null 2>&1; then
		FIO_WHY="fio not installed (apt-get install fio; the bench installs it when run as root)"
		return 1
	fi
	for e in io_uring libaio; do
		if fio --name=probe --filename="$W/www/t.img" --readonly \
			--rw=randread --bs=4k --ioengine=$e --iodepth=4 --direct=1 \
			--io_size=1m --output-format=terse >/dev/null 2>&1; then
			FIO_ENGINE=$e
			return 0
		fi
	done
	FIO_WHY="fio cannot use io_uring or libaio here"
	return 1
}

# fio_iops FILE QD DIRECT [SECONDS]: 4 KiB random reads for SECONDS
# (default FIO_SECONDS); RESULT = IOPS.
fio_iops() {
	local out rc=0 iops
	if [ -z "$FIO_ENGINE" ]; then
		WHY=$FIO_WHY
		return 1
	fi
	out=$(bounded fio --name=rand --filename="$1" --readonly --rw=randread \
		--bs=4k --ioengine="$FIO_ENGINE" --iodepth="$2" --direct="$3" \
		--time_based --runtime="${4:-$FIO_SECONDS}" --invalidate=0 \
		--norandommap --randrepeat=0 --output-format=terse \
		--terse-version=3 2>&1) || rc=$?
	if [ "$rc" != 0 ]; then
		WHY="fio failed (status $rc): $(grep -v '^3;' <<<"$out" | tail -n 1)"
		return 1
	fi
	# terse v3: field 5 is the error, field 8 the read IOPS.
	iops=$(awk -F';' '$1 == 3 { if ($5 != 0) print "err"; else print $8 }' <<<"$out")
	if ! isnum "${iops:-x}"; then
		WHY="fio reported no IOPS: $(tail -n 1 <<<"$out")"
		return 1
	fi
	RESULT=$iops
}

# lat_ft FILE: first-touch latency of 64 random 4 KiB O_DIRECT reads;
# sets FT_MEDIAN and FT_P99 (us).
lat_ft() {
	local out
	if ! out=$(bounded "$LAT" -n 64 -s 7 "$1" 2>&1); then
		WHY="lat failed: $(tail -n 1 <<<"$out")"
		return 1
	fi
	FT_MEDIAN=$(sed -n 's/.*median_us=\([0-9]*\).*/\1/p' <<<"$out")
	FT_P99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$out")
	RESULT=$FT_MEDIAN
}

# median of numbers on stdin
median() {
	sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# proc_cpu PID: utime + stime in seconds.
proc_cpu() {
	local hz
	hz=$(getconf CLK_TCK)
	sed 's/^.*) //' "/proc/$1/stat" |
		awk -v hz="$hz" '{ printf "%.2f", ($12 + $13) / hz }'
}


# proc_hwm PID: VmHWM in MiB.
proc_hwm() { awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# mem_mark PHASE: note the daemon's VmHWM after PHASE (for the remarks).
MEM_MARKS=
mem_mark() {
	pid_alive "$IC_PID" &&
		MEM_MARKS="${MEM_MARKS:+$MEM_MARKS, }$1 $(proc_hwm "$IC_PID")"
}

# ------------------------------------------------------------ prerequisites

if ! [ -c /dev/fuse ] || ! command -v fusermount3 >/dev/null 2>&1; then
	echo "bench: needs /dev/fuse and fusermount3 (package fuse3)" >&2
	exit 1
fi

log "work directory $W; SIZE $SIZE_SPEC"
mkdir -p "$W/www" "$W/nginx/tmp"
log "generating $SIZE_SPEC of incompressible data"
if command -v openssl >/dev/null 2>&1; then
	openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:imgcache-bench \
		-in /dev/zero 2>/dev/null | head -c "$SIZE" >"$W/www/t.img"
else
	head -c "$SIZE" /dev/urandom >"$W/www/t.img"
fi
if [ "$(stat -c %s "$W/www/t.img")" != "$SIZE" ]; then
	echo "bench: cannot write $SIZE bytes to $W/www/t.img" >&2
	exit 1
fi
# Same bytes under other names, each its own template with an empty cache.
ln "$W/www/t.img" "$W/www/ft.img"
ln "$W/www/t.img" "$W/www/cc.img"
if [ "$SPARSE" -gt 0 ]; then
	truncate -s "$SPARSE" "$W/sparse.img"
fi
fio_probe || log "$FIO_WHY"

# ------------------------------------------------------------ nginx

NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
HTTP_WHY=
NGINX_PID=
URL=
if ! [ -x "$NGINX" ]; then
	HTTP_WHY="nginx not installed (apt-get install nginx-light)"
elif ! command -v curl >/dev/null 2>&1; then
	HTTP_WHY="curl not installed"
else
	if command -v python3 >/dev/null 2>&1; then
		PORT=$(python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	else
		PORT=$((20000 + RANDOM % 20000))
	fi
	cat >"$W/nginx/nginx.conf" <<NGINXCONF
daemon off;
master_process off;
worker_processes 1;
error_log $W/nginx/error.log;
pid $W/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    log_format t '\$request|\$status|\$body_bytes_sent|\$http_range';
    access_log $W/nginx/access.log t;
    sendfile on;
    client_body_temp_path $W/nginx/tmp;
    proxy_temp_path $W/nginx/tmp;
    fastcgi_temp_path $W/nginx/tmp;
    uwsgi_temp_path $W/nginx/tmp;
    scgi_temp_path $W/nginx/tmp;
    server { listen 127.0.0.1:$PORT; root $W/www; autoindex on; }
}
NGINXCONF
	"$NGINX" -p "$W/nginx/" -c "$W/nginx/nginx.conf" >"$W/nginx/stderr" 2>&1 &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	URL=http://127.0.0.1:$PORT
	n=200
	until curl -sf -r 0-0 -o /dev/null "$URL/t.img"; do
		n=$((n - 1))
		if [ "$n" -le 0 ] || ! pid_alive "$NGINX_PID"; then
			HTTP_WHY="nginx did not start: $(tail -n 1 "$W/nginx/error.log" 2>/dev/null)"
			stop_pid "$NGINX_PID"
			URL=
			break
		fi
		sleep 0.05
	done
fi
[ -z "$HTTP_WHY" ] || log "$HTTP_WHY"

# served FROM_LINE PATH: body bytes nginx sent for GET PATH since FROM_LINE.
served() {
	awk -F'|' -v from="$1" -v p="GET $2 " 'NR >= from && index($1, p) == 1 { s += $3 }
		END { printf "%d\n", s }' "$W/nginx/access.log"
}
loglines() { wc -l <"$W/nginx/access.log"; }

# ------------------------------------------------------------ references

log "references: local reads"
meas cold_read "$W/www/t.img"
REF_LOCAL_COLD=$RESULT
val_or_na "local read, cold (after drop_caches)" MiB/s - - -
meas warm_read "$W/www/t.img"
REF_LOCAL_WARM=$RESULT
val_or_na "local read, warm (page cache)" MiB/s - - -

# new_write: write SIZE bytes to a new file (page cache, no fsync), as a
# cold fill writes every byte to a data file; RESULT = MiB/s.
new_write() {
	local t0 t1 rc=0
	t0=$EPOCHREALTIME
	bounded dd if=/dev/zero of="$W/write.test" bs=1M count=$((SIZE / 1048576)) \
		status=none 2>"$W/write.err" || rc=$?
	t1=$EPOCHREALTIME
	rm -f "$W/write.test"
	if [ "$rc" != 0 ]; then
		WHY="dd failed: $(tail -n 1 "$W/write.err")"
		return 1
	fi
	RESULT=$(mibps $((SIZE / 1048576 * 1048576)) "$t0" "$t1")
}
meas new_write
val_or_na "local write to a new file (page cache)" MiB/s - - -

# curl_get: download the template; RESULT = MiB/s.
curl_get() {
	local out b t
	if ! out=$(bounded curl -sS -o /dev/null -w '%{size_download} %{time_total}' \
		"$URL/t.img" 2>&1); then
		WHY="curl failed: $out"
		return 1
	fi
	read -r b t <<<"$out"
	if [ "$b" != "$SIZE" ]; then
		WHY="curl got $b of $SIZE bytes"
		return 1
	fi
	RESULT=$(awk -v b="$b" -v t="$t" 'BEGIN { printf "%.1f", b / 1048576 / t }')
}

# range_get: median latency (us) of 9 single 64 KiB Range GETs.
range_get() {
	local i off t
	for i in 1 2 3 4 5 6 7 8 9; do
		off=$(((RANDOM * 32768 + RANDOM) % (SIZE / BS) * BS))
		t=$(curl -sS -o /dev/null -r "$off-$((off + BS - 1))" \
			-w '%{time_total}' "$URL/t.img") || {
			WHY="curl range GET failed"
			return 1
		}
		awk -v t="$t" 'BEGIN { printf "%.0f\n", t * 1e6 }'
	done >"$W/range.us"
	RESULT=$(median <"$W/range.us")
}

REF_CURL=n/a
REF_RANGE=n/a
if [ -n "$URL" ]; then
	log "references: curl"
	fresh_origin
	meas curl_get # first run warms nginx and the socket path
	meas curl_get
	REF_CURL=$RESULT
	val_or_na "curl download from nginx (origin in page cache)" MiB/s - - -
	meas range_get
	REF_RANGE=$RESULT
	val_or_na "curl one 64 KiB Range GET, median of 9" us - - -
else
	na "curl download from nginx (origin in page cache)" MiB/s - - - "$HTTP_WHY"
	na "curl one 64 KiB Range GET, median of 9" us - - - "$HTTP_WHY"
fi

# direct_write BS: O_DIRECT writes of BS into a new file on the cache_dir's
# filesystem ($W/cache is the daemon's cache_dir), SIZE bytes in all, made
# durable (fdatasync) before the clock stops: the most a cold read that
# stores every byte can reach on this disk.  RESULT = MiB/s.
direct_write() {
	local bs=$1 n t0 t1 rc=0
	n=$((SIZE / $(size_bytes "$bs")))
	mkdir -p "$W/cache"
	t0=$EPOCHREALTIME
	bounded dd if=/dev/zero of="$W/cache/direct.test" bs="$bs" count="$n" 		oflag=direct conv=fdatasync status=none 2>"$W/dw.err" || rc=$?
	t1=$EPOCHREALTIME
	rm -f "$W/cache/direct.test"
	if [ "$rc" != 0 ]; then
		WHY="dd oflag=direct bs=$bs failed: $(tail -n 1 "$W/dw.err")"
		return 1
	fi
	RESULT=$(mibps $((n * $(size_bytes "$bs"))) "$t0" "$t1")
}
# imgcache writes a demand fill block by block (block_size 64K) and a
# readahead run in spans of up to 2 MiB (RA_RUN_BYTES, ic-readahead.h).
log "references: O_DIRECT writes to the cache filesystem"
meas direct_write 64K
REF_DW_BLOCK=$RESULT
val_or_na "O_DIRECT write to the cache filesystem, 64 KiB writes" MiB/s - - -
meas direct_write 2M
REF_DW_SPAN=$RESULT
val_or_na "O_DIRECT write to the cache filesystem, 2 MiB writes" MiB/s - - -

# --- libfuse passthrough_ll: the FUSE ceiling
PT=
PT_WHY=
pt_src=$EXAMPLES/passthrough_ll.c
if [ ! -e "$pt_src" ] && [ -e "$pt_src.gz" ]; then
	mkdir -p "$W/pt-src"
	cp "$EXAMPLES"/passthrough_helpers.h* "$W/pt-src/" 2>/dev/null
	gunzip -f "$W/pt-src/"*.gz 2>/dev/null
	zcat "$pt_src.gz" >"$W/pt-src/passthrough_ll.c"
	pt_src=$W/pt-src/passthrough_ll.c
fi
if [ ! -e "$pt_src" ]; then
	PT_WHY="$EXAMPLES/passthrough_ll.c not found (package libfuse3-dev)"
elif ! command -v gcc >/dev/null 2>&1 || ! pkg-config --exists fuse3 2>/dev/null; then
	PT_WHY="gcc or pkg-config fuse3 missing: cannot build passthrough_ll"
else
	log "references: building passthrough_ll from $pt_src"
	# shellcheck disable=SC2046 # word splitting of pkg-config is wanted
	if gcc -O2 -Wall -I"$(dirname "$pt_src")" -o "$W/passthrough_ll" "$pt_src" \
		$(pkg-config --cflags --libs fuse3) >"$W/pt-build.log" 2>&1; then
		PT=$W/passthrough_ll
	else
		PT_WHY="passthrough_ll did not compile: $(head -n 1 "$W/pt-build.log")"
	fi
fi

PT_MNT=$W/mnt-pt
pt_rows_na() {
	local f
	for f in "passthrough_ll buffered seq, cold" \
		"passthrough_ll buffered seq, source in page cache" \
		"passthrough_ll direct_io seq, cold"; do
		na "$f" MiB/s - - - "$1"
	done
	na "passthrough_ll direct_io rand 4K QD1" IOPS - - - "$1"
	na "passthrough_ll direct_io rand 4K QD16" IOPS - - - "$1"
}
REF_PT_BUF_COLD=n/a REF_PT_BUF_WARM=n/a REF_PT_DIO_COLD=n/a
REF_PT_QD1=n/a REF_PT_QD16=n/a
if [ -n "$PT" ]; then
	log "references: passthrough_ll buffered (cache=auto)"
	if start_fs passthrough_ll "$PT_MNT" "$W/pt.log" \
		"$PT" -f -o "source=$W/www,cache=auto" "$PT_MNT"; then
		meas cold_read "$PT_MNT/t.img"
		REF_PT_BUF_COLD=$RESULT
		val_or_na "passthrough_ll buffered seq, cold" MiB/s "local cold" "$REF_LOCAL_COLD" -
		# cache=auto does not keep the FUSE page cache across opens: a
		# second open reads through FUSE, the source from the page cache.
		fresh_origin
		meas seq_read "$PT_MNT/t.img"
		REF_PT_BUF_WARM=$RESULT
		val_or_na "passthrough_ll buffered seq, source in page cache" MiB/s \
			"local warm" "$REF_LOCAL_WARM" -
		stop_fs "$PT_MNT" "$FS_PID"
		log "references: passthrough_ll direct_io (cache=never)"
		if start_fs passthrough_ll "$PT_MNT" "$W/pt-direct.log" \
			"$PT" -f -o "source=$W/www,cache=never" "$PT_MNT"; then
			# Every open is direct_io; the reads are plain, so that
			# passthrough_ll reads its source through the page cache, as
			# imgcache reads its data files.
			meas cold_read "$PT_MNT/t.img"
			REF_PT_DIO_COLD=$RESULT
			val_or_na "passthrough_ll direct_io seq, cold" MiB/s "local cold" "$REF_LOCAL_COLD" -
			fresh_origin
			log "references: fio on passthrough_ll (2 x $FIO_SECONDS s)"
			meas fio_iops "$PT_MNT/t.img" 1 0
			REF_PT_QD1=$RESULT
			val_or_na "passthrough_ll direct_io rand 4K QD1" IOPS - - -
			meas fio_iops "$PT_MNT/t.img" 16 0
			REF_PT_QD16=$RESULT
			val_or_na "passthrough_ll direct_io rand 4K QD16" IOPS - - -
			stop_fs "$PT_MNT" "$FS_PID"
		else
			na "passthrough_ll direct_io seq, cold" MiB/s - - - "$WHY"
			na "passthrough_ll direct_io rand 4K QD1" IOPS - - - "$WHY"
			na "passthrough_ll direct_io rand 4K QD16" IOPS - - - "$WHY"
		fi
	else
		pt_rows_na "$WHY"
	fi
else
	pt_rows_na "$PT_WHY"
fi

# ------------------------------------------------------------ imgcache

IC_MNT=$W/mnt
CONF=$W/imgcache.conf
{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$W/cache"
	printf '\n[template file.img]\norigin = %s\n' "$W/www/t.img"
	if [ -n "$URL" ]; then
		printf '\n[template http.img]\norigin = %s/t.img\n' "$URL"
		printf '\n[template ft.img]\norigin = %s/ft.img\n' "$URL"
		printf '\n[template cc.img]\norigin = %s/cc.img\n' "$URL"
	fi
	if [ "$SPARSE" -gt 0 ]; then
		printf '\n[template sparse.img]\norigin = %s\n' "$W/sparse.img"
	fi
} >"$CONF"

F_HTTP_COLD="imgcache cold seq, HTTP origin"
F_FILE_COLD="imgcache cold seq, file origin"
F_WARM_BUF="imgcache warm seq, buffered"
F_WARM_DIO="imgcache warm seq, O_DIRECT"
F_FUSE_ALONE="imgcache seq, data file in page cache (FUSE path alone)"
F_QD1="imgcache warm rand 4K O_DIRECT QD1"
F_QD16="imgcache warm rand 4K O_DIRECT QD16"
F_FT_MED="imgcache first-touch rand 4K, median of 64"
F_FT_P99="imgcache first-touch rand 4K, p99 of 64"
F_CC_BYTES="imgcache 8 cold readers, origin bytes"
F_CC_RATE="imgcache 8 cold readers, aggregate"
F_RSS="imgcache daemon peak RSS (VmHWM)"
F_CPU="imgcache daemon CPU (utime+stime), whole run"
F_CPU_HTTP="imgcache daemon CPU during cold seq HTTP"
F_START="imgcache start-up with a 1M-block index"
F_HTTP_GETS="imgcache cold seq HTTP, mean Range GET size"
F_HTTP_LIMIT="imgcache cold seq HTTP vs min(curl, O_DIRECT write 64K)"
F_CPU_GIB="imgcache daemon CPU per GiB of cold seq HTTP"
F_SPLIT="machine CPU during cold seq HTTP"
CPU_HTTP=
CPU_HTTP_WHY=

log "imgcache: mounting $CONF"
if ! start_fs imgcache "$IC_MNT" "$W/imgcache.log" "$IMGCACHE" -f "$CONF" "$IC_MNT"; then
	echo "bench: $WHY" >&2
	print_table
	exit 1
fi
IC_PID=$FS_PID

# imgcache cold seq over HTTP: origin in nginx's page cache, as for curl.
if [ -n "$URL" ]; then
	log "imgcache: cold sequential read, HTTP origin"
	fresh_origin
	from=$(($(loglines) + 1))
	cpu0=$(proc_cpu "$IC_PID")
	stat0=$(sys_cpu)
	meas seq_read "$IC_MNT/http.img"
	stat1=$(sys_cpu)
	cpu1=$(proc_cpu "$IC_PID")
	val_or_na "$F_HTTP_COLD" MiB/s curl "$REF_CURL" ">=0.9"
	HTTP_COLD=$RESULT
	mem_mark "cold seq HTTP"
	# The limit of a cold read that stores every byte: the origin, or the
	# cache disk's O_DIRECT write rate at imgcache's write size.
	lim=$(awk -v a="$REF_CURL" -v b="$REF_DW_BLOCK" 'BEGIN {
		na = a !~ /^[0-9.]+$/; nb = b !~ /^[0-9.]+$/
		if (na && nb) print "n/a"; else if (na) print b; else if (nb) print a
		else print (a < b ? a : b) }')
	if [ "$MEAS_RC" = 0 ] && isnum "$lim"; then
		row "$F_HTTP_LIMIT" "$HTTP_COLD" MiB/s "min(curl, O_DIRECT write 64K)" "$lim" ">=0.9"
	else
		na "$F_HTTP_LIMIT" MiB/s "min(curl, O_DIRECT write 64K)" "$lim" ">=0.9" \
			"the cold read or both references failed"
	fi
	if [ "$MEAS_RC" = 0 ]; then
		read -r busy iow idle <<<"$(cpu_split "$stat0" "$stat1")"
		row "$F_SPLIT: busy" "$busy" CPU-s - - -
		row "$F_SPLIT: iowait" "$iow" CPU-s - - -
		row "$F_SPLIT: idle" "$idle" CPU-s - - -
		remark "cold seq HTTP: the machine's $(nproc) CPUs were busy $busy, in iowait $iow and idle $idle CPU-seconds (/proc/stat), the daemon used $(fmt "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" 2) of them."
	else
		for x in busy iowait idle; do
			na "$F_SPLIT: $x" CPU-s - - - "the cold HTTP read failed"
		done
	fi
	if [ "$MEAS_RC" = 0 ]; then
		CPU_HTTP=$(fmt "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" 2)
		row "$F_CPU_GIB" "$(fmt "$(awk -v c="$CPU_HTTP" -v s="$SIZE" 'BEGIN { print c / (s / 1073741824) }')" 2)" s/GiB - - -
		# How the read reached the origin: GETs and their mean size.
		awk -F'|' -v from="$from" 'NR >= from && index($1, "GET /t.img ") == 1 {
			n++; s += $3 } END { printf "%d %.0f\n", n, n ? s / n / 1024 : 0 }' \
			"$W/nginx/access.log" >"$W/http-gets"
		read -r GETS_N GETS_KIB <"$W/http-gets"
		row "$F_HTTP_GETS" "$GETS_KIB" KiB "block size" 64 -
		remark "the cold sequential HTTP read made $GETS_N GET requests to nginx."
	else
		CPU_HTTP_WHY="the cold HTTP read failed"
		na "$F_HTTP_GETS" KiB "block size" 64 - "$CPU_HTTP_WHY"
		na "$F_CPU_GIB" s/GiB - - - "$CPU_HTTP_WHY"
	fi
else
	na "$F_HTTP_COLD" MiB/s curl n/a ">=0.9" "$HTTP_WHY"
	na "$F_HTTP_LIMIT" MiB/s "min(curl, O_DIRECT write 64K)" n/a ">=0.9" "$HTTP_WHY"
	for x in busy iowait idle; do
		na "$F_SPLIT: $x" CPU-s - - - "$HTTP_WHY"
	done
	na "$F_CPU_GIB" s/GiB - - - "$HTTP_WHY"
	CPU_HTTP_WHY=$HTTP_WHY
	na "$F_HTTP_GETS" KiB "block size" 64 - "$HTTP_WHY"
fi

log "imgcache: cold sequential read, file origin"
fresh_origin
meas seq_read "$IC_MNT/file.img"
val_or_na "$F_FILE_COLD" MiB/s "passthrough buffered, source cached" "$REF_PT_BUF_WARM" -
mem_mark "cold seq file"

# Warm rows: from imgcache's disk cache.  The file-origin template is fully
# cached now; so is the HTTP one when there is one.
WARM_F=$IC_MNT/file.img
[ -n "$URL" ] && WARM_F=$IC_MNT/http.img
log "imgcache: warm sequential reads (after drop_caches)"
meas cold_read "$WARM_F"
val_or_na "$F_WARM_BUF" MiB/s "passthrough buffered" "$REF_PT_BUF_COLD" ">=0.9"
meas cold_read "$WARM_F" direct
val_or_na "$F_WARM_DIO" MiB/s "passthrough direct_io" "$REF_PT_DIO_COLD" ">=0.9"
# The FUSE path alone: the data file in the page cache (the O_DIRECT read
# just put it there), none of the FUSE file's pages (dropped by fadvise):
# what a cold buffered read could reach if fetching and storing were free.
bounded dd if="$WARM_F" iflag=nocache count=0 status=none 2>/dev/null || true
meas seq_read "$WARM_F"
val_or_na "$F_FUSE_ALONE" MiB/s curl "$REF_CURL" -
if isnum "${HTTP_COLD:-}" && isnum "$RESULT"; then
	remark "the cold sequential HTTP read ran at $(awk -v a="$HTTP_COLD" -v b="$RESULT" \
		'BEGIN { printf "%.2f", a / b }') of the FUSE path alone (same run)."
fi
mem_mark "warm seq"

# fio_pair QD: three rounds of a passthrough_ll job then an imgcache job,
# FIO_SECONDS/3 each, so that this VM's drift from minute to minute hits
# both alike; PAIR_PT and PAIR_IC = the medians.
fio_pair() {
	local qd=$1 r secs=$((FIO_SECONDS / 3 > 0 ? FIO_SECONDS / 3 : 1))
	: >"$W/pair.pt"
	: >"$W/pair.ic"
	for r in 1 2 3; do
		fio_iops "$PT_MNT/t.img" "$qd" 0 "$secs" || return 1
		echo "$RESULT" >>"$W/pair.pt"
		fio_iops "$WARM_F" "$qd" 1 "$secs" || return 1
		echo "$RESULT" >>"$W/pair.ic"
	done
	PAIR_PT=$(median <"$W/pair.pt")
	PAIR_IC=$(median <"$W/pair.ic")
	remark "fio QD$qd rounds (IOPS), passthrough_ll / imgcache: $(paste -d/ "$W/pair.pt" "$W/pair.ic" | tr '\n' ' ')"
}

# Random reads: data files in the page cache, as passthrough's source was
# (an O_DIRECT read through the mount puts the data file there).
log "imgcache: fio random reads, alternating with passthrough_ll (4 x $FIO_SECONDS s)"
bounded dd if="$WARM_F" of=/dev/null bs=1M iflag=direct status=none 2>/dev/null || true
fresh_pt=
if [ -n "$PT" ] && warm "$W/www/t.img" &&
	start_fs passthrough_ll "$PT_MNT" "$W/pt-pair.log" \
		"$PT" -f -o "source=$W/www,cache=never" "$PT_MNT"; then
	fresh_pt=$FS_PID
fi
for qd in 1 16; do
	f=$F_QD1 tgt=">=0.9"
	[ "$qd" = 1 ] || f=$F_QD16 tgt=-
	if [ -n "$fresh_pt" ] && meas fio_pair "$qd" && [ "$MEAS_RC" = 0 ]; then
		row "passthrough_ll direct_io rand 4K QD$qd, alternating with imgcache" \
			"$PAIR_PT" IOPS - - -
		row "$f" "$PAIR_IC" IOPS "passthrough alternating" "$PAIR_PT" "$tgt"
	else
		ref=$REF_PT_QD1
		[ "$qd" = 1 ] || ref=$REF_PT_QD16
		meas fio_iops "$WARM_F" "$qd" 1
		val_or_na "$f" IOPS "passthrough direct_io" "$ref" "$tgt"
	fi
done
[ -z "$fresh_pt" ] || stop_fs "$PT_MNT" "$fresh_pt"
mem_mark "fio"

if [ -n "$URL" ]; then
	log "imgcache: first-touch latency (64 cold random 4 KiB O_DIRECT reads)"
	meas lat_ft "$IC_MNT/ft.img"
	val_or_na "$F_FT_MED" us "one Range GET" "$REF_RANGE" "<=3"
	if [ "$MEAS_RC" = 0 ]; then
		row "$F_FT_P99" "$FT_P99" us "one Range GET" "$REF_RANGE" -
	else
		na "$F_FT_P99" us "one Range GET" "$REF_RANGE" - "$WHY"
	fi
	mem_mark "first-touch"

	log "imgcache: 8 concurrent cold readers (dd iflag=direct bs=1M)"
	from=$(($(loglines) + 1))
	pids=()
	t0=$EPOCHREALTIME
	for i in 0 1 2 3 4 5 6 7; do
		bounded dd if="$IC_MNT/cc.img" of=/dev/null bs=1M iflag=direct \
			2>"$W/cc.$i.err" &
		pids+=("$!")
	done
	failed=0
	for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
	t1=$EPOCHREALTIME
	short=0
	for i in 0 1 2 3 4 5 6 7; do
		grep -q "^$SIZE bytes" "$W/cc.$i.err" || short=$((short + 1))
	done
	if [ "$failed" = 0 ] && [ "$short" = 0 ]; then
		got=$(served "$from" /cc.img)
		row "$F_CC_BYTES" "$(fmt "$(awk -v b="$got" 'BEGIN { print b / 1048576 }')" 1)" \
			MiB "file size" "$(fmt "$(awk -v b="$SIZE" 'BEGIN { print b / 1048576 }')" 1)" \
			"<=1.01"
		row "$F_CC_RATE" "$(mibps $((8 * SIZE)) "$t0" "$t1")" MiB/s "curl" "$REF_CURL" -
	else
		why="$failed readers failed, $short read short: $(head -n 1 "$W/cc.0.err")"
		na "$F_CC_BYTES" MiB "file size" - "<=1.01" "$why"
		na "$F_CC_RATE" MiB/s curl "$REF_CURL" - "$why"
	fi
	mem_mark "8 readers"
else
	na "$F_FT_MED" us "one Range GET" n/a "<=3" "$HTTP_WHY"
	na "$F_FT_P99" us "one Range GET" n/a - "$HTTP_WHY"
	na "$F_CC_BYTES" MiB "file size" - "<=1.01" "$HTTP_WHY"
	na "$F_CC_RATE" MiB/s curl n/a - "$HTTP_WHY"
fi

if [ "$SPARSE" -gt 0 ]; then
	log "imgcache: 256 first-touch reads of the $((SPARSE >> 30)) GiB sparse template"
	if ! bounded "$LAT" -n 256 -s 3 "$IC_MNT/sparse.img" >"$W/sparse.lat" 2>&1; then
		remark "reads of the sparse template failed: $(tail -n 1 "$W/sparse.lat")"
	fi
	mem_mark "sparse"
fi

if pid_alive "$IC_PID"; then
	rss=$(proc_hwm "$IC_PID")
	remark "daemon VmHWM (MiB) after each phase: $MEM_MARKS; at the end $(awk '
		/^(VmRSS|RssAnon|RssFile|RssShmem|Threads):/ { sub(":", ""); v = $2
			if ($3 == "kB") v = sprintf("%.1f MiB", $2 / 1024); o = o (o ? ", " : "") $1 " " v }
		END { print o }' "/proc/$IC_PID/status")."
	cpu=$(proc_cpu "$IC_PID")
	row "$F_RSS" "$rss" MiB "target" 64 "<=1"
	row "$F_CPU" "$cpu" s - - -
	if [ -n "$CPU_HTTP" ]; then
		row "$F_CPU_HTTP" "$CPU_HTTP" s - - -
	else
		na "$F_CPU_HTTP" s - - - "$CPU_HTTP_WHY"
	fi
else
	na "$F_RSS" MiB target 64 "<=1" "the daemon died: $(tail -n 1 "$W/imgcache.log")"
	na "$F_CPU" s - - - "the daemon died"
	na "$F_CPU_HTTP" s - - - "the daemon died"
fi
if [ "$SPARSE" -gt 0 ]; then
	remark "imgcache mounted $(grep -c '^\[template' "$CONF") templates, one of them a $((SPARSE >> 30)) GiB sparse file origin (256 of its blocks read); RSS and CPU cover the daemon's whole run."
fi
stop_fs "$IC_MNT" "$IC_PID"

# Start-up with a 1M-block index: a 64 GiB sparse template whose index rows
# are written with sqlite3 (filling 64 GiB would take too long).  The rows
# claim blocks the data file does not hold; nothing reads them here.
startup_figure() {
	local sc=$W/startup sconf=$W/startup.conf smnt=$W/smnt t0 t1 n
	mkdir -p "$sc"
	truncate -s 64G "$W/big.img"
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n\n[template big.img]\norigin = %s\n' \
		"$sc/cache" "$W/big.img" >"$sconf"
	start_fs imgcache "$smnt" "$W/startup.log" "$IMGCACHE" -f "$sconf" "$smnt" ||
		{ na "$F_START" s - - "<=1" "$WHY"; return; }
	stop_fs "$smnt" "$FS_PID"
	# The columns named: the daemon adds columns in place (blocks.sha).
	sqlite3 "$sc/cache/index.db" "INSERT INTO blocks
		(tid, gen, blk, csum, atime, flags)
		WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c
			WHERE x < 1048575)
		SELECT t.id, t.generation, c.x, abs(random()), c.x, 0
		FROM c, templates t WHERE t.name = 'big.img';" ||
		{ na "$F_START" s - - "<=1" "sqlite3 could not write the rows"; return; }
	n=$(sqlite3 "$sc/cache/index.db" 'SELECT count(*) FROM blocks')
	[ -z "$CAN_DROP" ] || drop_caches
	t0=$(date +%s%N)
	start_fs imgcache "$smnt" "$W/startup.log" "$IMGCACHE" -f "$sconf" "$smnt" ||
		{ na "$F_START" s - - "<=1" "$WHY"; return; }
	t1=$(date +%s%N)
	stop_fs "$smnt" "$FS_PID"
	row "$F_START" "$(fmt "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')" 2)" s "target" 1 "<=1"
	remark "start-up: from exec to a mount that answers, $n index rows, $([ -n "$CAN_DROP" ] && echo "page cache dropped first" || echo "index in the page cache")."
}
if command -v sqlite3 >/dev/null 2>&1; then
	log "imgcache: start-up with a 1M-block index"
	startup_figure
else
	na "$F_START" s - - "<=1" "sqlite3 (the CLI) is not installed"
fi

# The daemon's CPU per GiB of a cold HTTP read with cache_dir on tmpfs
# (no disk: what the daemon itself costs), with kernel_readahead = 1M
# (1 MiB FUSE requests from the kernel's readahead) and with the default,
# kernel_readahead = 0 (the kernel's 128 KiB),
# alternated, BENCH_TMPFS_ROUNDS rounds each, a new daemon and cache each.
F_TMPFS="imgcache daemon CPU per GiB, cold seq HTTP, cache on tmpfs, kernel_readahead = 1M"
F_TMPFS_RATE="imgcache cold seq HTTP, cache on tmpfs, kernel_readahead = 1M"
tmpfs_na() {
	na "$F_TMPFS" s/GiB "kernel_readahead = 0" - - "$1"
	na "$F_TMPFS_RATE" MiB/s "kernel_readahead = 0" - - "$1"
}
tmpfs_figure() {
	local tm=$W/tmpfs tmnt=$W/tmnt r k c0 c1 order dm zm drm zrm avail
	local rounds=${BENCH_TMPFS_ROUNDS:-3}
	[ "$rounds" -ge 1 ] 2>/dev/null || { tmpfs_na "BENCH_TMPFS_ROUNDS=$rounds"; return; }
	# The tmpfs holds the whole template, beside the origin's and the
	# mount's page cache: only where half the available memory takes it.
	avail=$(awk '$1 == "MemAvailable:" { printf "%.0f\n", $2 * 1024 }' /proc/meminfo)
	if [ -n "$avail" ] && [ "$SIZE" -gt $((avail / 2)) ]; then
		tmpfs_na "SIZE is more than half of MemAvailable"
		return
	fi
	mkdir -p "$tm"
	if ! mount -t tmpfs -o "size=$((SIZE / 1048576 * 2 + 64))M,mode=0700" \
		imgcache-bench "$tm" 2>/dev/null; then
		tmpfs_na "cannot mount a tmpfs (not root?)"
		return
	fi
	MOUNTS+=("$tm")
	: >"$W/tmpfs.cpu"
	for ((r = 1; r <= rounds; r++)); do
		if ((r % 2)); then order="d z"; else order="z d"; fi
		for k in $order; do
			{
				printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$tm/cache"
				[ "$k" = z ] || printf 'kernel_readahead = 1M\n'
				printf '\n[template http.img]\norigin = %s/t.img\n' "$URL"
			} >"$W/tmpfs.conf"
			fresh_origin
			start_fs imgcache "$tmnt" "$W/tmpfs.log" "$IMGCACHE" -f \
				"$W/tmpfs.conf" "$tmnt" ||
				{ tmpfs_na "$WHY"; unmount "$tm"; return; }
			c0=$(proc_cpu "$FS_PID")
			meas seq_read "$tmnt/http.img"
			c1=$(proc_cpu "$FS_PID")
			stop_fs "$tmnt" "$FS_PID"
			rm -rf "$tm/cache"
			if [ "$MEAS_RC" != 0 ]; then
				tmpfs_na "the read failed: $WHY"
				unmount "$tm"
				return
			fi
			awk -v k="$k" -v a="$c0" -v b="$c1" -v s="$SIZE" -v m="$RESULT" \
				'BEGIN { printf "%s %.2f %s\n", k, (b - a) / (s / 1073741824), m }' \
				>>"$W/tmpfs.cpu"
		done
	done
	unmount "$tm"
	med() { awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$W/tmpfs.cpu" | sort -n |
		awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
	spread() { awk -v k="$1" -v f="$2" '$1 == k { printf "%s ", $f }' "$W/tmpfs.cpu"; }
	dm=$(med d 2) zm=$(med z 2) drm=$(med d 3) zrm=$(med z 3)
	row "$F_TMPFS" "$dm" s/GiB "kernel_readahead = 0" "$zm" -
	row "$F_TMPFS_RATE" "$drm" MiB/s "kernel_readahead = 0" "$zrm" -
	remark "cache on tmpfs, medians of $rounds alternated rounds: daemon CPU s/GiB $(spread d 2)(kernel_readahead = 1M) against $(spread z 2)(the default, kernel_readahead = 0: the kernel's 128K); MiB/s $(spread d 3)against $(spread z 3)."
}
if [ -n "$URL" ]; then
	log "imgcache: cold sequential read, cache on tmpfs"
	tmpfs_figure
else
	tmpfs_na "$HTTP_WHY"
fi

# ------------------------------------------------------------ peers

# peer_rows NAME MNT_FILE: the cold/warm/random rows for a mounted peer.
peer_rows() {
	local n=$1 f=$2
	log "$n: cold sequential read"
	fresh_origin
	meas seq_read "$f"
	val_or_na "$n cold seq, HTTP origin" MiB/s curl "$REF_CURL" -
	log "$n: warm sequential reads"
	meas cold_read "$f"
	val_or_na "$n warm seq, buffered" MiB/s "passthrough buffered" "$REF_PT_BUF_COLD" -
	meas cold_read "$f" direct
	val_or_na "$n warm seq, O_DIRECT" MiB/s "passthrough direct_io" "$REF_PT_DIO_COLD" -
	log "$n: fio random reads (2 x $FIO_SECONDS s)"
	meas fio_iops "$f" 1 1
	val_or_na "$n warm rand 4K O_DIRECT QD1" IOPS "passthrough direct_io" "$REF_PT_QD1" -
	meas fio_iops "$f" 16 1
	val_or_na "$n warm rand 4K O_DIRECT QD16" IOPS "passthrough direct_io" "$REF_PT_QD16" -
}

# peer_na NAME WHY: one row for all of a peer's figures.
peer_na() {
	na "$1 (cold seq, warm seq, warm rand rows)" - - - - "$2"
}

if [ "${BENCH_PEERS:-}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	for p in httpdirfs rclone; do
		command -v "$p" >/dev/null 2>&1 && continue
		log "installing $p (BENCH_PEERS=1)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" \
			>"$W/apt-$p.log" 2>&1 || log "apt-get install $p failed"
	done
fi

if [ "${BENCH_PEERS:-}" = 0 ]; then
	peer_na httpdirfs "skipped (BENCH_PEERS=0)"
elif [ -z "$URL" ]; then
	peer_na httpdirfs "$HTTP_WHY"
elif ! command -v httpdirfs >/dev/null 2>&1; then
	peer_na httpdirfs "not installed (BENCH_PEERS=1 installs it)"
else
	m=$W/mnt-httpdirfs
	mkdir -p "$W/httpdirfs-cache"
	if start_fs httpdirfs "$m" "$W/httpdirfs.log" httpdirfs -f --cache \
		--cache-location "$W/httpdirfs-cache" --no-range-check "$URL/" "$m"; then
		peer_rows httpdirfs "$m/t.img"
		stop_fs "$m" "$FS_PID"
	else
		peer_na httpdirfs "$WHY"
	fi
fi

if [ "${BENCH_PEERS:-}" = 0 ]; then
	peer_na rclone "skipped (BENCH_PEERS=0)"
elif [ -z "$URL" ]; then
	peer_na rclone "$HTTP_WHY"
elif ! command -v rclone >/dev/null 2>&1; then
	peer_na rclone "not installed (BENCH_PEERS=1 installs it)"
else
	m=$W/mnt-rclone
	: >"$W/rclone.conf"
	if start_fs rclone "$m" "$W/rclone.log" rclone mount --config "$W/rclone.conf" \
		--http-url "$URL/" --vfs-cache-mode full --cache-dir "$W/rclone-cache" \
		:http: "$m"; then
		peer_rows rclone "$m/t.img"
		stop_fs "$m" "$FS_PID"
	else
		peer_na rclone "$WHY"
	fi
fi

if [ -n "$NGINX_PID" ]; then
	stop_pid "$NGINX_PID"
fi

remark "cold = imgcache's cache empty, origin file in the page cache (nginx and the file origin serve from RAM); warm = from imgcache's disk cache after drop_caches."
remark "passthrough_ll direct_io = -o cache=never, read without O_DIRECT so that it reads its source through the page cache, as imgcache reads its data files; fio on it runs with direct=0, on imgcache and peers with direct=1."
print_table
if [ -n "${BENCH_MD:-}" ]; then
	write_md "$BENCH_MD"
	log "markdown table written to $BENCH_MD"
fi
exit 0
