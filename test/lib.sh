# shellcheck shell=sh
# lib.sh — helpers shared by the imgcache integration tests (test/t-*.sh).
#
# Source it first thing:   . "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
#
# It sets -eu, makes a private work directory $T (removed on exit), and
# installs a trap that unmounts every mount the test made and stops every
# process it started (by pid, never by name).  `make check` exports
# top_builddir and top_srcdir; run by hand, both default to the source tree.
#
# Output: one line per assertion, "ok - ..." or "not ok - ...".  A test exits
# 0 when every assertion passed, 1 otherwise, 77 when it cannot run here.
# Set IMGCACHE_DEBUG=1 to run the daemon with -d, KEEP_TMP=1 to keep $T.

set -eu

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
IMGCACHE=$top_builddir/fs/imgcache
ORIGINFS=$top_builddir/test/originfs
RANDREAD=$top_builddir/test/randread
TEST_NAME=$(basename "$0" .sh)
# Upper bound for any single command that reads through a mount: a hung
# daemon makes the test fail instead of hanging `make check`.
T_TIMEOUT=${T_TIMEOUT:-120}
# shellcheck disable=SC2034 # used by the tests
BS=65536 # block_size used by every test config

T=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-$TEST_NAME.XXXXXX")
T=$(cd "$T" && pwd -P) # canonical, as /proc/self/mountinfo shows it
CACHE=$T/cache
_registry=$T/.registry # one line per daemon we started: "PID MOUNTPOINT"
: >"$_registry"
_nstart=0
_failed=0

# ------------------------------------------------------------ reporting

ok() { echo "ok - $*"; }

not_ok() {
	echo "not ok - $*"
	_failed=1
}

# fail MSG: report and end the test now.
fail() {
	echo "not ok - $*"
	_failed=1
	exit 1
}

skip() {
	echo "SKIP: $*"
	exit 77
}

# note MSG: informational line (not an assertion).
note() { echo "# $*"; }

# show_log FILE [LINES]: print the tail of a log, prefixed, to stderr.
show_log() {
	if [ -s "$1" ]; then
		echo "# --- last ${2:-40} lines of $1:" >&2
		tail -n "${2:-40}" "$1" | sed 's/^/#   /' >&2
	fi
}

# check DESC CMD...: run CMD, report ok/not ok (continues on failure).
check() {
	_c_desc=$1
	shift
	if "$@"; then ok "$_c_desc"; else not_ok "$_c_desc"; fi
}

# assert_eq DESC EXPECTED ACTUAL
assert_eq() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		not_ok "$1 (expected '$2', got '$3')"
	fi
}

# assert_le DESC A B: integers, A <= B
assert_le() {
	if [ "$2" -le "$3" ]; then
		ok "$1 ($2 <= $3)"
	else
		not_ok "$1 ($2 > $3)"
	fi
}

# assert_same DESC FILE_A FILE_B: byte-for-byte equal (cmp).
assert_same() {
	if bounded cmp "$2" "$3" >"$T/.cmp" 2>&1; then
		ok "$1"
	else
		not_ok "$1: $(head -n 1 "$T/.cmp")"
	fi
}

# ------------------------------------------------------------ cleanup

_cleanup() {
	_rc=$?
	set +e
	trap - EXIT INT TERM HUP
	# Newest first: imgcache mounts are on top of originfs mounts.
	tac "$_registry" 2>/dev/null | while read -r _pid _mnt; do
		[ "$_pid" = - ] || kill -CONT "$_pid" 2>/dev/null
		if is_mounted "$_mnt"; then
			fusermount3 -u "$_mnt" 2>/dev/null ||
				fusermount3 -uz "$_mnt" 2>/dev/null
		fi
		[ "$_pid" = - ] && continue
		if ! _wait_exit "$_pid" 5; then
			kill -TERM "$_pid" 2>/dev/null
			_wait_exit "$_pid" 5 || kill -KILL "$_pid" 2>/dev/null
		fi
	done
	# tmpfs mounts of ours (mount_tmpfs), once nothing runs on them.
	tac "$T/.tmpfs" 2>/dev/null | while read -r _mnt; do
		umount -l "$_mnt" 2>/dev/null
	done
	# The test's own undo steps (at_cleanup), now that nothing is mounted.
	eval "${_at_cleanup:-:}"
	if [ "$_failed" != 0 ] && [ "$_rc" = 0 ]; then
		_rc=1
	fi
	if awk -v t="$T/" 'index($5, t) == 1 { f = 1 } END { exit !f }' \
		/proc/self/mountinfo; then
		echo "# warning: mounts left under $T; not removing it" >&2
	elif [ -n "${KEEP_TMP:-}" ]; then
		echo "# work directory kept: $T" >&2
	else
		rm -rf --one-file-system "$T"
	fi
	exit "$_rc"
}
trap _cleanup EXIT

# at_cleanup CMD: run CMD (a shell command line) on exit, after every mount
# of the test is gone and before $T is removed, however the test ends.
at_cleanup() { _at_cleanup="${_at_cleanup:-}$1;"; }
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ------------------------------------------------------------ processes

# is_mounted DIR: DIR is a mount point (reads /proc only: never blocks on
# an unresponsive FUSE daemon).
is_mounted() {
	awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo
}

_pid_alive() {
	[ -d "/proc/$1" ] &&
		! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"
}

# _wait_exit PID SECONDS: poll until PID has exited; 1 on timeout.
_wait_exit() {
	_we_n=$(($2 * 20))
	while _pid_alive "$1"; do
		_we_n=$((_we_n - 1))
		[ "$_we_n" -gt 0 ] || return 1
		sleep 0.05
	done
	return 0
}

# wait_for SECONDS CMD...: poll CMD every 0.05 s until it succeeds; 1 on
# timeout.
wait_for() {
	_wf_n=$(($1 * 20))
	shift
	until "$@"; do
		_wf_n=$((_wf_n - 1))
		[ "$_wf_n" -gt 0 ] || return 1
		sleep 0.05
	done
	return 0
}

_register() { echo "$1 $2" >>"$_registry"; }

_unregister() {
	grep -v "^$1 " "$_registry" >"$_registry.new" || true
	mv "$_registry.new" "$_registry"
}

_pid_of() {
	awk -v m="$1" '$2 == m { p = $1 } END { print p }' "$_registry"
}

# _wait_mounted PID MNT LOG WHAT: wait up to 10 s for MNT to be mounted and
# answering; fail with the daemon's log if it exits first or times out.
_wait_mounted() {
	_wm_n=200
	while :; do
		if is_mounted "$2" && timeout -k 2 10 mountpoint -q "$2"; then
			return 0
		fi
		if ! _pid_alive "$1"; then
			_wm_rc=0
			wait "$1" || _wm_rc=$?
			_unregister "$1"
			show_log "$3"
			fail "$4 exited (status $_wm_rc) before mounting $2"
		fi
		_wm_n=$((_wm_n - 1))
		if [ "$_wm_n" -le 0 ]; then
			show_log "$3"
			fail "$4 did not mount $2 within 10 s"
		fi
		sleep 0.05
	done
}

# _stop PID MNT LOG WHAT [term]: unmount MNT (or SIGTERM the daemon), wait
# for the daemon to exit; fail if it does not exit or MNT stays mounted,
# report not ok if its exit status is not 0.
_stop() {
	if [ "${5:-}" = term ]; then
		kill -TERM "$1" || fail "cannot signal $4 (pid $1)"
	else
		fusermount3 -u "$2" || fail "fusermount3 -u $2 failed"
	fi
	if ! _wait_exit "$1" 10; then
		show_log "$3"
		fail "$4 (pid $1) still running 10 s after unmount of $2"
	fi
	_st_rc=0
	wait "$1" || _st_rc=$?
	_unregister "$1"
	if [ "$_st_rc" != 0 ]; then
		show_log "$3"
		not_ok "$4 exits 0 after ${5:-unmount} of $2 (status $_st_rc)"
	fi
	if is_mounted "$2"; then
		fail "$2 still mounted after $4 exited"
	fi
}

# start_imgcache CONF MNT [ARGS...]: run imgcache -f [ARGS] CONF MNT in the
# background, stderr to $IMGCACHE_LOG (a new file per start), and wait until
# MNT is mounted.  Sets IMGCACHE_PID and IMGCACHE_LOG.
start_imgcache() {
	_si_conf=$1
	_si_mnt=$2
	shift 2
	_nstart=$((_nstart + 1))
	IMGCACHE_LOG=$T/imgcache.$_nstart.log
	mkdir -p "$_si_mnt"
	if [ -n "${IMGCACHE_DEBUG:-}" ]; then
		set -- -d "$@"
	fi
	"$IMGCACHE" -f "$@" "$_si_conf" "$_si_mnt" >"$IMGCACHE_LOG" 2>&1 &
	IMGCACHE_PID=$!
	_register "$IMGCACHE_PID" "$_si_mnt"
	_wait_mounted "$IMGCACHE_PID" "$_si_mnt" "$IMGCACHE_LOG" imgcache
}

# reload_imgcache: SIGHUP the daemon start_imgcache started and wait
# (bounded) until its log says the reload ended, applied or refused.
reload_imgcache() {
	_rl_pat="-e reloaded -e keeping.the.running"
	# shellcheck disable=SC2086 # two grep patterns
	_rl_n=$(grep -c $_rl_pat "$IMGCACHE_LOG" || true)
	kill -HUP "$IMGCACHE_PID"
	wait_for 10 sh -c "[ \$(grep -c $_rl_pat '$IMGCACHE_LOG') -gt $_rl_n ]" ||
		fail "reload did not finish (after $_rl_n before it)"
}

# stop_imgcache MNT [term]: unmount with fusermount3 -u (or, with "term",
# send SIGTERM) and wait (bounded) for the daemon to exit with status 0.
stop_imgcache() {
	_pid=$(_pid_of "$1")
	[ -n "$_pid" ] || fail "stop_imgcache: nothing of ours mounted on $1"
	_stop "$_pid" "$1" "$IMGCACHE_LOG" imgcache "${2:-}"
}

# start_originfs SRC LOG MNT: expose SRC read-only on MNT, logging every
# read request to LOG ("<path> <offset> <size>").  Sets ORIGINFS_PID.
start_originfs() {
	_nstart=$((_nstart + 1))
	_so_log=$T/originfs.$_nstart.log
	mkdir -p "$3"
	"$ORIGINFS" "$1" "$2" "$3" -f >"$_so_log" 2>&1 &
	ORIGINFS_PID=$!
	_register "$ORIGINFS_PID" "$3"
	_wait_mounted "$ORIGINFS_PID" "$3" "$_so_log" originfs
}

stop_originfs() {
	_pid=$(_pid_of "$1")
	[ -n "$_pid" ] || fail "stop_originfs: nothing of ours mounted on $1"
	_stop "$_pid" "$1" /dev/null originfs
}

# require_fuse: exit 77 (SKIP) unless FUSE file systems can be mounted here.
require_fuse() {
	for _rf_b in "$IMGCACHE" "$ORIGINFS" "$RANDREAD"; do
		[ -x "$_rf_b" ] || fail "$_rf_b is not built (run make)"
	done
	[ -c /dev/fuse ] || skip "/dev/fuse missing"
	command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 not installed"
	command -v mountpoint >/dev/null 2>&1 || skip "mountpoint not installed"
	(exec 9<>/dev/fuse) 2>/dev/null || skip "/dev/fuse cannot be opened"
	# Probe: mount a FUSE file system for real.
	mkdir -p "$T/.probe/src" "$T/.probe/mnt"
	"$ORIGINFS" "$T/.probe/src" "$T/.probe/log" "$T/.probe/mnt" -f \
		>"$T/.probe/err" 2>&1 &
	_rf_pid=$!
	_register "$_rf_pid" "$T/.probe/mnt"
	if wait_for 10 is_mounted "$T/.probe/mnt"; then
		_stop "$_rf_pid" "$T/.probe/mnt" "$T/.probe/err" originfs
	else
		_rf_msg=$(grep -v 'max threads' "$T/.probe/err" | head -n 1)
		skip "cannot mount a FUSE file system here: ${_rf_msg:-timeout}"
	fi
}

# bounded CMD...: run CMD with the $T_TIMEOUT limit.
bounded() { timeout -k 5 "$T_TIMEOUT" "$@"; }

# now_ms: milliseconds since the epoch.
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ------------------------------------------------------------ data

# make_file PATH SIZE_MIB: incompressible data.
make_file() { make_file_bytes "$1" $(($2 * 1048576)); }

# make_file_bytes PATH BYTES
make_file_bytes() {
	mkdir -p "$(dirname "$1")"
	head -c "$2" /dev/urandom >"$1"
	[ "$(stat -c %s "$1")" = "$2" ] || fail "make_file: cannot write $1"
}

# write_at FILE OFFSET LEN: overwrite LEN random bytes at OFFSET, in place.
write_at() {
	head -c "$3" /dev/urandom |
		dd of="$1" bs=64K seek="$2" oflag=seek_bytes conv=notrunc \
			iflag=fullblock status=none
}

# extract FILE OFFSET LEN OUT: copy a byte range of FILE to OUT (bounded).
extract() {
	bounded dd if="$1" of="$4" bs=64K skip="$2" count="$3" \
		iflag=skip_bytes,count_bytes status=none
}

# global_section: the [global] section every test uses (4 lines).
global_section() {
	printf '[global]\ncache_dir = %s\nblock_size = 64K\norigin_timeout = 3s\n' \
		"$CACHE"
}

# read_blocks FILE WANT N: read blocks 0..N-1 of FILE one by one, of BS
# bytes (64K; O_DIRECT); sets WRONG (blocks served unlike WANT's) and EIO
# (failed).
read_blocks() {
	WRONG=0 EIO=0
	for b in $(seq 0 $(($3 - 1))); do
		if bounded dd if="$1" of="$T/blk" bs=64K skip="$b" count=1 \
			iflag=direct status=none 2>/dev/null; then
			extract "$2" $((b * BS)) $BS "$T/want"
			cmp -s "$T/blk" "$T/want" || WRONG=$((WRONG + 1))
		else
			EIO=$((EIO + 1))
		fi
	done
}

# data_bytes FILE: bytes of FILE's data extents (SEEK_DATA/SEEK_HOLE):
# what the cache stored, without the filesystem's own metadata (an ext4
# extent tree block counts in st_blocks once a file has many extents).
data_bytes() {
	python3 - "$1" <<'PYEOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end = os.fstat(fd).st_size
off = total = 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    total += h - d
    off = h
print(total)
PYEOF
}

# mount_tmpfs DIR SIZE: a small filesystem of our own (root only), e.g.
# to fill it; detached by the EXIT trap.  1 when it cannot be mounted.
mount_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2,mode=0700" imgcache-test "$1" 2>/dev/null ||
		return 1
	echo "$1" >>"$T/.tmpfs"
}

# ------------------------------------------------------------ nginx

# NGINX: the nginx binary (it may be outside a non-root PATH).
NGINX=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)

# require_nginx: exit 77 (SKIP) unless nginx is installed.
require_nginx() { [ -x "$NGINX" ] || skip "nginx not installed"; }

# free_port: a TCP port free on 127.0.0.1 at this moment.
free_port() {
	python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# nginx_config PORT LOG [SERVER]: write $T/nginx/nginx.conf for a foreground
# nginx (started by the test, stopped by its pid) serving $T/www on
# 127.0.0.1:PORT.  LOG: the log directives (e.g. "access_log off;"); SERVER:
# more directives inside the server block.
nginx_config() {
	mkdir -p "$T/nginx/tmp"
	cat >"$T/nginx/nginx.conf" <<NGINXCONF
daemon off;
master_process off;
worker_processes 1;
error_log $T/nginx/error.log;
pid $T/nginx/nginx.pid;
events { worker_connections 512; }
http {
    $2
    client_body_temp_path $T/nginx/tmp;
    proxy_temp_path $T/nginx/tmp;
    fastcgi_temp_path $T/nginx/tmp;
    uwsgi_temp_path $T/nginx/tmp;
    scgi_temp_path $T/nginx/tmp;
    default_type application/octet-stream;
    keepalive_timeout 60s;
    server { listen 127.0.0.1:$1; root $T/www; ${3:-} }
}
NGINXCONF
}

# ------------------------------------------------------------ faultsrv

FAULTSRV=$top_srcdir/test/faultsrv.py

# require_local_http: for tests whose HTTP servers run here (nginx,
# faultsrv, free_port): exit 77 (SKIP) without python3, and drop the
# proxy settings of the environment, which would send 127.0.0.1 elsewhere.
require_local_http() {
	command -v python3 >/dev/null 2>&1 || skip "python3 not installed"
	unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy \
		ALL_PROXY no_proxy NO_PROXY
}

# start_faultsrv NAME DATA [ARGS...]: start test/faultsrv.py serving DATA,
# logging requests to $T/NAME.log; sets PORT, URL (http://127.0.0.1:PORT,
# https with --tls-cert) and PID_NAME.  A NAME may be started again after
# stop_faultsrv NAME (e.g. with --port on the same port).
start_faultsrv() {
	_sf=$1
	_sd=$2
	shift 2
	command -v python3 >/dev/null 2>&1 || skip "python3 not installed"
	rm -f "$T/$_sf.port"
	python3 "$FAULTSRV" --data "$_sd" --port-file "$T/$_sf.port" \
		--log "$T/$_sf.log" "$@" >/dev/null 2>"$T/$_sf.err" &
	_register $! -
	eval "PID_$_sf=$!"
	if ! wait_for 10 test -s "$T/$_sf.port"; then
		show_log "$T/$_sf.err"
		fail "faultsrv $_sf did not start"
	fi
	PORT=$(cat "$T/$_sf.port")
	# shellcheck disable=SC2034 # used by the tests
	URL=http://127.0.0.1:$PORT
	# shellcheck disable=SC2034
	case " $* " in *" --tls-cert "*) URL=https://127.0.0.1:$PORT ;; esac
}

# stop_pid PID: stop a server of ours started with _register PID -
# (SIGTERM, then SIGKILL after 5 s) and forget it.
stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	_wait_exit "$1" 5 || kill -KILL "$1" 2>/dev/null
	_unregister "$1"
}

# stop_faultsrv NAME: stop the server start_faultsrv NAME started.
stop_faultsrv() {
	eval "stop_pid \$PID_$1"
}

# ------------------------------------------------------------ origin log

# count_reads LOG [PATH]: origin read requests (for PATH, e.g. /disk.img).
count_reads() {
	[ -e "$1" ] || {
		echo 0
		return
	}
	awk -v p="${2:-}" 'p == "" || $1 == p { n++ } END { print n + 0 }' "$1"
}

# count_bytes LOG [PATH]: bytes requested from the origin.
count_bytes() {
	[ -e "$1" ] || {
		echo 0
		return
	}
	awk -v p="${2:-}" 'p == "" || $1 == p { s += $3 } END { printf "%d\n", s }' "$1"
}

# reads_overlapping LOG PATH START END [FROM_LINE]: requests for PATH that
# overlap [START, END), counting log lines from FROM_LINE (1-based) on.
reads_overlapping() {
	awk -v p="$2" -v a="$3" -v b="$4" -v from="${5:-1}" \
		'NR >= from && $1 == p && $2 < b && $2 + $3 > a { n++ }
		 END { print n + 0 }' "$1"
}

# refetched_bytes LOG PATH: bytes of PATH requested from the origin more than
# once (0 = no block fetched twice).  Byte ranges, not request counts: the
# kernel may split one origin read into several FUSE requests.
refetched_bytes() {
	awk -v p="$2" '$1 == p && $3 > 0 { print $2, $2 + $3 }' "$1" |
		sort -n -k1,1 |
		awk 'NR > 1 && $1 < end { d += ($2 < end ? $2 : end) - $1 }
		     $2 > end { end = $2 }
		     END { printf "%d\n", d }'
}
