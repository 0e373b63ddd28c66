#!/bin/sh
# t-stress: DURATION seconds (default 20; run DURATION=600 for the 10-minute
# campaign of issue 7) of 16 O_DIRECT random readers (test/randread, each
# in a loop of short runs with fresh seeds) over three templates with tight
# quotas: two file origins and one HTTP origin (nginx on 127.0.0.1), while
#  - pins change every second (imgcache-pin through the control socket when
#    the daemon has one, else `pin =` in the config and SIGHUP),
#  - SIGHUP reloads with new quotas every 2 s,
#  - nginx flaps: up FLAP_UP s (3), down FLAP_DOWN s (2).
# Asserted: no byte mismatch ever; EIO only on the HTTP template; every
# reload finishes; the daemon stays up and, with the origin back (its host
# seen up again by the daemon within FINAL_BOUND s), a full read of each
# template completes within FINAL_BOUND s (no deadlock) and
# equals the origin; then RELOAD_STORM (1100) more SIGHUPs, every one
# applied; VmRSS (sampled each second, the first min(10 s, DURATION/4) of
# warm-up left out) stays flat: max of the last third of the samples <= 1.5
# x max of the first third + 16 MiB; allocated bytes of each data file
# (sampled each second) <= the largest quota it had + 16 readers x the
# largest fill one reader's request can cause (the readers are random, so
# sequential readahead seldom adds to it).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_nginx
command -v curl >/dev/null 2>&1 || skip "curl not installed"
require_local_http

DURATION=${DURATION:-20}
FLAP_UP=${FLAP_UP:-3}
FLAP_DOWN=${FLAP_DOWN:-2}
FINAL_BOUND=60
READERS=16
MAXREAD=131072 # randread -b: the largest read request of a reader
# The largest fill one request can cause: its blocks, plus one when it
# straddles a boundary.
FILL_MAX=$(((MAXREAD / BS + 1) * BS))
PIN=$top_builddir/tools/imgcache-pin
MIB=1048576

make_file "$T/src/f1.img" 32
make_file_bytes "$T/src/f2.img" $((24 * MIB + 4321)) # short last block
make_file "$T/www/h.img" 32
cp "$T/www/h.img" "$T/h.orig"

# ------------------------------------------------------------ nginx
PORT=$(free_port)
nginx_config "$PORT" "access_log off;"
answers() { curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/h.img"; }
# nginx is started and stopped by the flap loop too (a subshell), so its pid
# lives in $T/nginx.pid, not in lib.sh's registry (one writer only: the
# main shell); the EXIT trap below stops whichever nginx is running.
nginx_up() {
	"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >>"$T/nginx/stderr" 2>&1 &
	echo "$!" >"$T/nginx.pid"
	wait_for 10 answers || {
		show_log "$T/nginx/error.log"
		echo "nginx did not start" >>"$T/nginx.fail"
		return 1
	}
}
nginx_down() {
	_np=$(cat "$T/nginx.pid" 2>/dev/null) || return 0
	[ -n "$_np" ] || return 0
	kill -TERM "$_np" 2>/dev/null || true
	_wait_exit "$_np" 5 || kill -KILL "$_np" 2>/dev/null
	wait "$_np" 2>/dev/null || true
	: >"$T/nginx.pid"
}
_stress_exit() {
	_se_rc=$?
	nginx_down
	(exit "$_se_rc")
	_cleanup
}
trap _stress_exit EXIT
nginx_up || fail "nginx did not start"


# ------------------------------------------------------------ config
# write_conf TICK: quotas alternate every other reload, config pins change
# at every tick (used when there is no control socket).
Q1A=2M Q1B=1M Q2A=3M Q2B=1536K Q3A=4M Q3B=2M
qmax_of() { # the largest quota a template had
	case $1 in f1) echo $((2 * MIB)) ;; f2) echo $((3 * MIB)) ;; h) echo $((4 * MIB)) ;; esac
}
write_conf() {
	_tick=$1
	if [ $((_tick / 2 % 2)) = 0 ]; then
		q1=$Q1A q2=$Q2A q3=$Q3A
	else
		q1=$Q1B q2=$Q2B q3=$Q3B
	fi
	if [ -z "$CTL" ] && [ $((_tick % 2)) = 1 ]; then
		p1=512K-768K p2=0-128K p3=128K-256K
	else
		p1=0-256K p2=1M-1280K p3=0-64K
	fi
	{
		global_section # origin_timeout = 3s
		printf 'connect_timeout = 1s\nrevalidate = 0\n'
		printf '\n[template f1.img]\norigin = %s\nquota = %s\n' \
			"$T/src/f1.img" "$q1"
		[ -n "$CTL" ] || printf 'pin = %s\n' "$p1"
		printf '\n[template f2.img]\norigin = %s\nquota = %s\n' \
			"$T/src/f2.img" "$q2"
		[ -n "$CTL" ] || printf 'pin = %s\n' "$p2"
		printf '\n[template h.img]\norigin = http://127.0.0.1:%s/h.img\n' \
			"$PORT"
		printf 'quota = %s\n' "$q3"
		[ -n "$CTL" ] || printf 'pin = %s\n' "$p3"
	} >"$T/conf.new"
	mv "$T/conf.new" "$T/conf"
}
CTL= # set below when the daemon has a control socket
write_conf 0
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
IPID=$IMGCACHE_PID
if [ -x "$PIN" ] && wait_for 3 test -S "$CACHE/ctl.sock"; then
	CTL=1
	note "pins change through imgcache-pin and $CACHE/ctl.sock"
else
	note "no control socket: pins change through 'pin =' and SIGHUP"
fi

START_MS=$(now_ms)
END_MS=$((START_MS + DURATION * 1000))
running() { [ "$(now_ms)" -lt "$END_MS" ]; }

# ------------------------------------------------------------ readers
# reader IDX NAME ORIGIN_COPY: randread runs of 50 reads until the end;
# one line per run in $T/res.IDX: ok | eio | mismatch | error | hang.
reader() {
	_i=0
	while running; do
		_i=$((_i + 1))
		_seed=$(($1 * 1000000 + _i))
		_rc=0
		timeout -k 5 "$FINAL_BOUND" "$RANDREAD" -d -b "$MAXREAD" -n 50 \
			-s "$_seed" "$MNT/$2" "$3" >/dev/null 2>"$T/err.$1" || _rc=$?
		if [ "$_rc" = 0 ]; then
			echo "ok $2 $_seed"
		elif [ "$_rc" = 124 ] || [ "$_rc" = 137 ]; then
			echo "hang $2 $_seed"
		elif grep -q mismatch "$T/err.$1"; then
			echo "mismatch $2 $_seed $(head -n 1 "$T/err.$1")"
		elif grep -q 'Input/output error' "$T/err.$1"; then
			echo "eio $2 $_seed"
		else
			echo "error $2 $_seed rc=$_rc $(head -n 1 "$T/err.$1")"
		fi
	done >"$T/res.$1"
}
bg_pids=""
r=0
while [ "$r" -lt "$READERS" ]; do
	case $((r % 3)) in
	0) reader "$r" f1.img "$T/src/f1.img" & ;;
	1) reader "$r" f2.img "$T/src/f2.img" & ;;
	2) reader "$r" h.img "$T/h.orig" & ;;
	esac
	_register $! -
	bg_pids="$bg_pids $!"
	r=$((r + 1))
done

# ------------------------------------------------------------ faults
# icpin ARGS...: imgcache-pin, bounded; a failure is noted in $T/pin.log
# (allowed: a pin may not fit a quota just lowered, h.img's origin may be
# down) and counted.
: >"$T/pin.log"
icpin() {
	echo "$*" >>"$T/pin.calls"
	_ip_rc=0
	timeout -k 2 20 "$PIN" --cache-dir "$CACHE" "$@" >"$T/pin.out" 2>&1 ||
		_ip_rc=$?
	[ "$_ip_rc" = 0 ] ||
		echo "imgcache-pin $* -> $_ip_rc: $(tail -n 1 "$T/pin.out")" >>"$T/pin.log"
	[ "$_ip_rc" != 124 ] || echo "imgcache-pin $* timed out" >>"$T/pin.hang"
}
# control: every second a pin change, every 2 s a quota change (SIGHUP).
control() {
	_tick=0
	_hups=0
	while running; do
		sleep 1
		_tick=$((_tick + 1))
		if [ -n "$CTL" ]; then
			if [ $((_tick % 2)) = 1 ]; then
				_a=512K-768K _b=0-256K
			else
				_a=0-256K _b=512K-768K
			fi
			icpin f1.img "$_a"
			icpin -u f1.img "$_b"
			icpin -n h.img "$_a"
			icpin -u h.img "$_b"
			[ $((_tick % 2)) = 0 ] || continue
		fi
		write_conf "$_tick"
		kill -HUP "$IPID" || break
		_hups=$((_hups + 1))
	done
	echo "$_hups" >"$T/hups"
}
control &
CONTROL_PID=$!
_register "$CONTROL_PID" -

flap() {
	_n=0
	while running; do
		sleep "$FLAP_UP"
		running || break
		nginx_down
		_n=$((_n + 1))
		sleep "$FLAP_DOWN"
		nginx_up || break
	done
	echo "$_n" >"$T/flaps"
}
flap &
FLAP_PID=$!
_register "$FLAP_PID" -

# monitor: every second VmRSS (KiB) and the allocated bytes of each data file.
monitor() {
	while running; do
		_rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$IPID/status" 2>/dev/null)
		[ -n "$_rss" ] || {
			echo "daemon gone" >"$T/gone"
			break
		}
		echo "$_rss" >>"$T/rss"
		awk '$1 == "RssAnon:" { a = $2 } $1 == "RssFile:" { f = $2 }
			END { print a, f }' "/proc/$IPID/status" >>"$T/rss.detail" 2>/dev/null
		for _f in f1 f2 h; do
			_alloc=0
			for _d in "$CACHE/data/$_f.img".*; do
				[ -e "$_d" ] || continue
				_alloc=$((_alloc + $(stat -c %b "$_d") * 512))
			done
			echo "$_f $_alloc" >>"$T/alloc"
		done
		sleep 1
	done
}
monitor &
MON_PID=$!
_register "$MON_PID" -

# ------------------------------------------------------------ wait
# Every loop ends by itself at END_MS, and every command in them is bounded
# (a reader's randread run by FINAL_BOUND s): `wait` is bounded too.  (Not
# a poll on the pids: the shell may have reaped them and the numbers be
# reused by now.)
for p in $bg_pids "$CONTROL_PID" "$FLAP_PID" "$MON_PID"; do
	wait "$p" || true
	_unregister "$p"
done
[ ! -s "$T/nginx.fail" ] || not_ok "nginx failed to restart: $(cat "$T/nginx.fail")"
np=$(cat "$T/nginx.pid" 2>/dev/null || true)
if [ -z "$np" ] || ! _pid_alive "$np"; then
	nginx_up || fail "nginx did not start"
fi
check "the daemon is alive after the stress" _pid_alive "$IPID"
# The flaps left nginx's host marked down: misses fail at once until the
# daemon's probe (backoff up to 30 s) reaches it again.
h_up() {
	[ "$(getfattr --only-values -n user.imgcache.origin_state \
		"$MNT/h.img" 2>/dev/null)" = up ]
}
wait_for "$FINAL_BOUND" h_up || not_ok "h.img's origin up again within $FINAL_BOUND s"
check "the daemon never went away during the stress" test ! -e "$T/gone"

# ------------------------------------------------------------ verdicts
cat "$T"/res.* >"$T/res"
cnt() { awk -v k="$1" -v n="${2:-}" '$1 == k && (n == "" || $2 == n) { c++ }
	END { print c + 0 }' "$T/res"; }
note "duration ${DURATION} s: $(wc -l <"$T/res") randread runs of 50 reads: $(cnt ok) ok, $(cnt eio h.img) EIO on h.img; $(cat "$T/flaps" 2>/dev/null || echo 0) origin outages, $(cat "$T/hups" 2>/dev/null || echo 0) SIGHUPs"
note "per template ok/eio: f1 $(cnt ok f1.img)/$(cnt eio f1.img), f2 $(cnt ok f2.img)/$(cnt eio f2.img), h $(cnt ok h.img)/$(cnt eio h.img)"
assert_eq "no byte mismatch" 0 "$(cnt mismatch)"
grep '^mismatch' "$T/res" | head -n 3 | sed 's/^/# /'
assert_eq "no randread run hung (timeout)" 0 "$(cnt hang)"
assert_eq "no other read errors" 0 "$(cnt error)"
grep '^error' "$T/res" | head -n 3 | sed 's/^/# /'
assert_eq "no EIO on the file templates" 0 \
	$(($(cnt eio f1.img) + $(cnt eio f2.img)))
check "the file templates were read ($(cnt ok f1.img) + $(cnt ok f2.img) runs)" \
	test "$(cnt ok f1.img)" -gt 0 -a "$(cnt ok f2.img)" -gt 0
check "the HTTP template was read successfully ($(cnt ok h.img) runs)" \
	test "$(cnt ok h.img)" -gt 0
if [ -n "$CTL" ]; then
	note "imgcache-pin: $(wc -l <"$T/pin.calls" 2>/dev/null || echo 0) calls, $(wc -l <"$T/pin.log" 2>/dev/null || echo 0) failed"
	for _t in f1.img h.img; do
		note "  failed on $_t: $(grep -c " $_t " "$T/pin.log" || true)"
	done
	# f1.img's origin never fails and its pins fit its quota: a pinned
	# block must win room against the readers' fills (evicting them).
	assert_eq "every pin-and-fetch of f1.img (file origin) completed" 0 \
		"$(grep -c " f1.img " "$T/pin.log" || true)"
	sort "$T/pin.log" 2>/dev/null | sed 's/^[^>]*> //' | sort | uniq -c |
		sort -rn | head -n 3 | sed 's/^/#   /'
	assert_eq "no imgcache-pin call hung (20 s)" 0 \
		"$(if [ -e "$T/pin.hang" ]; then wc -l <"$T/pin.hang"; else echo 0; fi)"
fi

# Every SIGHUP was answered by a finished reload.
hups=$(cat "$T/hups" 2>/dev/null || echo 0)
reloads_done() {
	[ "$(grep -c -e 'reloaded' -e 'keeping the running' "$IMGCACHE_LOG")" -ge "$hups" ]
}
wait_for 20 reloads_done || true
assert_eq "every reload finished" "$hups" \
	"$(grep -c -e 'reloaded' -e 'keeping the running' "$IMGCACHE_LOG")"
assert_eq "no reload rejected the config" 0 \
	"$(grep -c 'keeping the running' "$IMGCACHE_LOG")"

# RSS: flat.  Samples of the first WARMUP s (the daemon's threads and
# buffers being created) are left out; of the rest, the max of the last
# third must stay <= 1.5 x the max of the first third + 16 MiB.
WARMUP=$((DURATION / 4 < 10 ? DURATION / 4 : 10))
tail -n +$((WARMUP + 1)) "$T/rss" >"$T/rss.steady"
n=$(wc -l <"$T/rss.steady")
third=$((n / 3))
if [ "$third" -ge 1 ]; then
	first=$(head -n "$third" "$T/rss.steady" | sort -n | tail -n 1)
	last=$(tail -n "$third" "$T/rss.steady" | sort -n | tail -n 1)
	note "VmRSS: $n samples after ${WARMUP} s of warm-up, max of first third $first KiB, of last third $last KiB, overall max $(sort -n "$T/rss" | tail -n 1) KiB; last RssAnon/RssFile $(tail -n 1 "$T/rss.detail") KiB"
	if ldd "$IMGCACHE" 2>/dev/null | grep -q libasan; then
		# ASan's quarantine holds freed memory: RSS says nothing here.
		note "AddressSanitizer build: VmRSS rule not asserted"
	else
		assert_le "VmRSS flat: max(last third) <= 1.5 x max(first third) + 16 MiB (KiB)" \
			"$last" $((first * 3 / 2 + 16384))
	fi
else
	not_ok "too few RSS samples ($n)"
fi

# Quotas.
for f in f1 f2 h; do
	qmax=$(qmax_of "$f")
	amax=$(awk -v f="$f" '$1 == f && $2 > m { m = $2 } END { printf "%d\n", m }' "$T/alloc")
	note "$f.img: max allocated $amax bytes, largest quota $qmax, overshoot $((amax - qmax))"
	assert_le "$f.img allocated <= quota + $READERS x $FILL_MAX" "$amax" \
		$((qmax + READERS * FILL_MAX))
done

# ------------------------------------------------------------ final reads
for f in f1.img f2.img h.img; do
	case $f in h.img) o=$T/h.orig ;; *) o=$T/src/$f ;; esac
	t0=$(now_ms)
	rc=0
	timeout -k 5 "$FINAL_BOUND" cat "$MNT/$f" >"$T/final" 2>"$T/final.err" || rc=$?
	ms=$(($(now_ms) - t0))
	if [ "$rc" = 0 ]; then
		ok "final full read of $f within $FINAL_BOUND s ($ms ms)"
		assert_same "final full read of $f equals the origin" "$T/final" "$o"
	else
		not_ok "final full read of $f (status $rc after $ms ms: $(head -n 1 "$T/final.err"))"
	fi
done

# ------------------------------------------------------------ reload storm
# A long-lived daemon is reloaded by config management for months: more
# reloads than any fixed table of old configs holds.  Paced: each SIGHUP is
# sent once the previous reload is logged as finished (queued SIGHUPs could
# fairly be merged into one reload).
RELOAD_STORM=${RELOAD_STORM:-1100}
cat >"$T/storm.py" <<'EOF'
import os, sys, time
pid, n, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
f = open(log, errors="replace")
f.seek(0, 2)
done = refused = 0
lat = []
buf = ""
for i in range(n):
    t0 = time.monotonic()
    os.kill(pid, 1)
    while True:
        part = f.readline()
        if not part:
            if time.monotonic() - t0 > 30:
                print(done, refused, "stuck", i)
                sys.exit(1)
            time.sleep(0.001)
            continue
        buf += part
        if not buf.endswith("\n"):
            continue
        line, buf = buf, ""
        if "keeping the running" in line:
            refused += 1
        elif "reloaded" not in line:
            continue
        done += 1
        lat.append(time.monotonic() - t0)
        break
lat.sort()
print(done, refused, int(lat[len(lat) // 2] * 1000), int(lat[-1] * 1000))
EOF
t0=$(now_ms)
rc=0
out=$(timeout -k 5 600 python3 "$T/storm.py" "$IPID" "$RELOAD_STORM" \
	"$IMGCACHE_LOG") || rc=$?
# shellcheck disable=SC2086 # four words
set -- $out
note "reload storm: $RELOAD_STORM SIGHUPs in $(($(now_ms) - t0)) ms: ${1:-?} finished, ${2:-?} refused, median ${3:-?} ms, max ${4:-?} ms; index.db $(stat -c %s "$CACHE/index.db") bytes"
assert_eq "every SIGHUP of the storm was answered within 30 s" 0 "$rc"
assert_eq "no reload refused ($((hups + RELOAD_STORM)) since the start)" 0 \
	"${2:-?}"
grep 'keeping the running' "$IMGCACHE_LOG" | head -n 1 | sed 's/^/# first refusal: /'
check "the mount still serves f1.img after the storm" \
	cmp -s "$MNT/f1.img" "$T/src/f1.img"
note "VmRSS after the storm: $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$IPID/status") KiB"
stop_imgcache "$MNT"
nginx_down
