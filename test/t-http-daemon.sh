#!/bin/sh
# t-http-daemon: one imgcache mount whose templates sit behind misbehaving
# HTTP origins (test/faultsrv.py), next to a good one.  Through the mount,
# for every fault: a read returns the origin's exact bytes (503 once, 429,
# redirect) or fails with EIO within origin_timeout + connect_timeout + 2 s;
# the daemon stays up and keeps serving the good template; nothing from a
# bad response reaches the index or the data files.  Templates whose HEAD
# fails at start (hang, huge Content-Length, redirect loop, 404) are left
# out and the log says so.  An ETag that changes during a read never gives
# one handle a mix of old and new bytes; a new open sees the new content.
# A template whose origin answers 404 disappears from the mount and comes
# back with the file (needs nginx, else noted).  Credentials and query
# strings in origin URLs never reach the debug log or the origin xattr.
# SKIP (77) without FUSE, python3 or sqlite3.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"
# Debug logging: the secrets check must cover every line the daemon writes.
IMGCACHE_DEBUG=1
export IMGCACHE_DEBUG

OT=3000                    # origin_timeout (ms)
CT=1000                    # connect_timeout (ms)
BOUND=$((OT + CT + 2000))  # the longest one read through the mount may take
MIB=1048576
make_file "$T/data" 16     # served by faultsrv A and B under every mode
make_file "$T/flip" 1      # served by faultsrv C under etagflip/
# etagflip/'s content after the flip: every byte inverted.
python3 -c 'import sys
d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(d.translate(bytes(range(255, -1, -1))))' \
	"$T/flip" "$T/flip.new"

# ------------------------------------------------------------ servers


start_faultsrv B "$T/data"
B=$URL
start_faultsrv A "$T/data" --redirect-to "$B"
PA=$PORT
A=$URL
# Requests to etagflip/ 1..3 see the old content, 4.. the new: 1 is the
# HEAD at start, 2 the HEAD of the open that reads the whole file, 3 its
# first block; the rest (and the daemon's readahead) come after the change.
start_faultsrv C "$T/flip" --flip-after 3
C=$URL
# Credentials and a token that must never be seen again.
SA=http://user:secret@127.0.0.1:$PA

# nginx for the template that goes away (404) and comes back.
HAVE_NGINX=
if [ -x "$NGINX" ] && command -v curl >/dev/null 2>&1; then
	HAVE_NGINX=1
	PN=$(free_port)
	make_file "$T/www/gone.img" 1
	cp "$T/www/gone.img" "$T/gone.orig"
	nginx_config "$PN" "access_log $T/nginx/access.log;"
	"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" \
		>"$T/nginx/stderr" 2>&1 &
	NGINX_PID=$!
	_register "$NGINX_PID" -
	nginx_answers() {
		curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PN/gone.img"
	}
	wait_for 10 nginx_answers || {
		show_log "$T/nginx/error.log"
		fail "nginx did not start"
	}
else
	note "nginx or curl missing: the 404-and-back checks are not run"
fi

# 429/ answers 429 (Retry-After: 1) to the first request of each (method,
# path, Range).  The daemon's HEAD at start is bounded by connect_timeout
# (1 s here), which a Retry-After of 1 s does not fit in; use up r429.img's
# first HEAD here so that the template mounts and its Range GETs meet the
# 429s.  429h.img meets the 429 at start (see below).
python3 - "$A/429/r429.img" <<'EOF' || fail "cannot pre-send HEAD to 429/"
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(urllib.request.Request(sys.argv[1], method="HEAD"))
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code == 429 else 1)
sys.exit(1)
EOF

# ------------------------------------------------------------ config

MOUNTED="norange.img badrange.img short.img endless.img trickle.img gzip.img"
EXACT="503once.img r429.img redirect.img"
ABSENT="hugelen.img hang.img loop.img 404.img"
{
	global_section
	printf 'connect_timeout = 1s\nrevalidate = 0\n'
	tmpl() { printf '\n[template %s]\norigin = %s\n' "$1" "$2"; }
	tmpl good.img "$B/ok/good.img"
	tmpl good-a.img "$A/ok/good-a.img"
	tmpl sec.img "$SA/ok/sec.img?token=secret"
	for m in norange badrange short endless trickle gzip 503once redirect \
		hugelen hang; do
		tmpl "$m.img" "$A/$m/$m.img"
	done
	tmpl r429.img "$A/429/r429.img"
	tmpl 429h.img "$A/429/429h.img"
	# URLs with secrets for faults that the daemon logs.
	tmpl loop.img "$SA/loop/loop.img?token=secret"
	tmpl 404.img "$SA/404/404.img?token=secret"
	tmpl flip.img "$C/etagflip/flip.img"
	if [ -n "$HAVE_NGINX" ]; then
		tmpl gone.img "http://127.0.0.1:$PN/gone.img"
	fi
} >"$T/conf"
MNT=$T/mnt

t0=$(now_ms)
start_imgcache "$T/conf" "$MNT"
note "mounted in $(($(now_ms) - t0)) ms"
LOG=$IMGCACHE_LOG
DPID=$IMGCACHE_PID

# listed NAME: NAME is in the mount's directory listing (readdir).
listed() {
	for _l in "$MNT"/*; do
		[ "${_l##*/}" = "$1" ] && return 0
	done
	return 1
}

# ------------------------------------------------------------ start-up

for n in good.img good-a.img sec.img flip.img $MOUNTED $EXACT; do
	check "$n: in the mount (its HEAD succeeds)" listed "$n"
done
[ -z "$HAVE_NGINX" ] || check "gone.img: in the mount" listed gone.img
for n in $ABSENT; do
	if listed "$n"; then
		not_ok "$n: left out (its HEAD fails), but it is listed"
	else
		ok "$n: left out at start"
	fi
	if stat "$MNT/$n" >/dev/null 2>"$T/stat.err"; then
		not_ok "$n: stat must fail"
	else
		check "$n: stat fails with ENOENT" \
			grep -q "No such file or directory" "$T/stat.err"
	fi
	check "$n: the log says it was left out, and why" \
		grep -q "template $n: origin .* unavailable (.*leaving it out" "$LOG"
done
check "404.img: the log names its origin, masked" grep -q \
	"template 404.img: origin http://\*\*\*@127.0.0.1:$PA/404/404.img?\*\*\* " \
	"$LOG"
# 429h.img: 429 with Retry-After: 1 on the HEAD at start.  Either the
# daemon waited and mounted it (then it must read right), or it gave up
# within its bound and the log says why.
if listed 429h.img; then
	note "429h.img: mounted after a 429 at start"
	EXACT="$EXACT 429h.img"
else
	check "429h.img (429 at start): left out, and the log says why" \
		grep -q "template 429h.img: origin .*leaving it out" "$LOG"
fi

# ------------------------------------------------------------ helpers

GOOD_N=0
# good_ok: the daemon is alive and good.img serves a 1 MiB range not read
# before (a fill from the good server, not a cache hit).
good_ok() {
	if kill -0 "$DPID" 2>/dev/null; then
		ok "$1: daemon alive"
	else
		show_log "$LOG"
		fail "$1: the daemon died"
	fi
	_k=$((GOOD_N % 16))
	GOOD_N=$((GOOD_N + 1))
	rm -f "$T/good.out"
	bounded dd if="$MNT/good.img" of="$T/good.out" bs=1M skip="$_k" \
		count=1 iflag=direct status=none 2>"$T/good.err" || true
	extract "$T/data" $((_k * MIB)) "$MIB" "$T/good.want"
	assert_same "$1: good.img still reads right (MiB $_k)" \
		"$T/good.out" "$T/good.want"
}

# try_read DESC FILE BLOCK [direct]: one 64K read at block BLOCK; sets RC,
# MS and $T/out, $T/err.
try_read() {
	rm -f "$T/out"
	_flags=
	[ "${4:-}" = direct ] && _flags=iflag=direct
	_t0=$(now_ms)
	RC=0
	# shellcheck disable=SC2086
	bounded dd if="$2" of="$T/out" bs=64K skip="$3" count=1 $_flags \
		status=none 2>"$T/err" || RC=$?
	MS=$(($(now_ms) - _t0))
}

# read_eio NAME BLOCK HOW: the read fails with EIO within BOUND.
read_eio() {
	try_read "$1" "$MNT/$1" "$2" "$3"
	if [ "$RC" = 0 ]; then
		extract "$T/data" $(($2 * BS)) "$BS" "$T/want"
		if cmp -s "$T/out" "$T/want"; then
			not_ok "$1: $3 read must fail with EIO (it returned the right bytes)"
		else
			not_ok "$1: $3 read must fail with EIO (it returned WRONG bytes)"
		fi
	else
		check "$1: $3 read fails with EIO" \
			grep -q "Input/output error" "$T/err"
	fi
	assert_le "$1: $3 read ended within the bound (ms)" "$MS" "$BOUND"
	if [ "$MS" -gt "$BOUND" ] && [ "$3" = buffered ]; then
		note "$1: after a failed readahead the kernel asks for the page" \
			"again (->read_folio): unless the daemon fails that" \
			"second read at once, a buffered read waits twice"
	fi
}

# read_exact NAME BLOCK HOW: the read returns the origin's bytes within
# BOUND.
read_exact() {
	try_read "$1" "$MNT/$1" "$2" "$3"
	extract "$T/data" $(($2 * BS)) "$BS" "$T/want"
	if [ "$RC" = 0 ] && cmp -s "$T/out" "$T/want"; then
		ok "$1: $3 read returns the origin's bytes"
	else
		not_ok "$1: $3 read returns the origin's bytes: rc $RC $(head -n 1 "$T/err")"
	fi
	assert_le "$1: $3 read ended within the bound (ms)" "$MS" "$BOUND"
}

good_ok "before any fault"

# ------------------------------------------------------------ faults: EIO

for n in $MOUNTED; do
	read_eio "$n" 1 direct
	read_eio "$n" 16 buffered # readahead asks for more than one block
	good_ok "after $n"
done

# ------------------------------------------------------------ faults: exact

for n in $EXACT; do
	read_exact "$n" 1 direct
	read_exact "$n" 32 buffered
	good_ok "after $n"
done
check "503once.img: 503 then 206 for the same range" \
	grep -q '^GET /503once/503once.img bytes=65536-131071 503' "$T/A.log"
check "r429.img: 429 then 206 for the same range" \
	grep -q '^GET /429/r429.img bytes=65536-131071 429' "$T/A.log"
check "redirect.img: the second server served it" \
	grep -q '^GET /ok/redirect.img bytes=65536-131071 206' "$T/B.log"

# The server of all those faults still serves (no connection slot leaked).
try_read good-a.img "$MNT/good-a.img" 5 direct
extract "$T/data" $((5 * BS)) "$BS" "$T/want"
if [ "$RC" = 0 ] && cmp -s "$T/out" "$T/want"; then
	ok "good-a.img (same server as the faults) still reads right"
else
	not_ok "good-a.img (same server as the faults): rc $RC $(head -n 1 "$T/err")"
fi

# ------------------------------------------------------------ etagflip

# One open reads the whole file while the ETag changes under it: the bytes
# it got are the old content, entirely or up to an EIO, never a mix.
gen1=$(getfattr --only-values -n user.imgcache.generation "$MNT/flip.img" \
	2>/dev/null || echo "?")
rm -f "$T/flip.out"
RC=0
bounded dd if="$MNT/flip.img" of="$T/flip.out" bs=64K iflag=direct \
	status=none 2>"$T/flip.err" || RC=$?
got=$(stat -c %s "$T/flip.out" 2>/dev/null || echo 0)
if [ "$RC" = 0 ]; then
	assert_same "flip.img: a read through the change got the old content" \
		"$T/flip.out" "$T/flip"
	note "flip.img: the change did not hit the read (got all $got bytes)"
else
	check "flip.img: the read through the change fails with EIO" \
		grep -q "Input/output error" "$T/flip.err"
	if [ "$got" -lt "$MIB" ] &&
		cmp -s -n "$got" "$T/flip.out" "$T/flip"; then
		ok "flip.img: the $got bytes read before the EIO are old content"
	else
		not_ok "flip.img: $got bytes read before the EIO are not an old prefix"
	fi
fi
check "flip.img: the server changed during the read (412 seen)" \
	grep -q '^GET /etagflip/flip.img bytes=[0-9-]* 412' "$T/C.log"
rm -f "$T/flip.out2"
bounded dd if="$MNT/flip.img" of="$T/flip.out2" bs=64K iflag=direct \
	status=none 2>"$T/flip.err" || true
assert_same "flip.img: a new open reads the new content" "$T/flip.out2" \
	"$T/flip.new"
bounded cat "$MNT/flip.img" >"$T/flip.out3" 2>/dev/null || true
assert_same "flip.img: a buffered read after the change: new content" \
	"$T/flip.out3" "$T/flip.new"
gen2=$(getfattr --only-values -n user.imgcache.generation "$MNT/flip.img" \
	2>/dev/null || echo "?")
if [ "$gen1" != "?" ] && [ "$gen2" != "?" ] && [ "$gen2" -gt "$gen1" ]; then
	ok "flip.img: generation advanced ($gen1 -> $gen2)"
else
	not_ok "flip.img: generation advanced ($gen1 -> $gen2)"
fi
good_ok "after flip.img"

# ------------------------------------------------------------ 404 and back

not_listed() { ! listed "$1"; }
stat_enoent() {
	! stat "$MNT/$1" >/dev/null 2>"$T/stat.err" &&
		grep -q "No such file or directory" "$T/stat.err"
}
stat_ok() { stat "$MNT/$1" >/dev/null 2>&1; }

if [ -n "$HAVE_NGINX" ]; then
	try_read gone.img "$MNT/gone.img" 0 direct
	extract "$T/gone.orig" 0 "$BS" "$T/want"
	if [ "$RC" = 0 ] && cmp -s "$T/out" "$T/want"; then
		ok "gone.img: reads right while on the server"
	else
		not_ok "gone.img: reads right while on the server: rc $RC"
	fi
	mv "$T/www/gone.img" "$T/www/gone.away"
	# The daemon learns it is gone at this open (revalidate = 0) or read.
	try_read gone.img "$MNT/gone.img" 3 direct
	if [ "$RC" = 0 ]; then
		not_ok "gone.img: a read of an uncached block after the 404 must fail"
	else
		ok "gone.img: a read after the 404 fails: $(head -n 1 "$T/err")"
	fi
	assert_le "gone.img: ... within the bound (ms)" "$MS" "$BOUND"
	check "gone.img: the log says it is gone" \
		grep -q "template gone.img: origin .* is gone" "$LOG"
	check "gone.img: no longer listed" wait_for 5 not_listed gone.img
	check "gone.img: stat fails with ENOENT" wait_for 5 stat_enoent gone.img
	check "daemon alive after the 404" kill -0 "$DPID"
	mv "$T/www/gone.away" "$T/www/gone.img"
	# A listing alone (no lookup by name) must notice it, too.
	check "gone.img: back on the server: listed again (ls only)" \
		wait_for 5 listed gone.img
	check "gone.img: back on the server: stat finds it" \
		wait_for 5 stat_ok gone.img
	check "gone.img: back on the server: listed" wait_for 5 listed gone.img
	bounded cat "$MNT/gone.img" >"$T/gone.out" 2>/dev/null || true
	assert_same "gone.img: reads right after coming back" "$T/gone.out" \
		"$T/gone.orig"
fi

# ------------------------------------------------------------ secrets

try_read sec.img "$MNT/sec.img" 2 direct
extract "$T/data" $((2 * BS)) "$BS" "$T/want"
if [ "$RC" = 0 ] && cmp -s "$T/out" "$T/want"; then
	ok "sec.img (user:pass@ and ?token= in its URL) reads right"
else
	not_ok "sec.img reads right: rc $RC $(head -n 1 "$T/err")"
fi
check "sec.img: the credentials were used" \
	grep -q '^GET /ok/sec.img?token=secret .* auth$' "$T/A.log"
X=$(getfattr --only-values -n user.imgcache.origin "$MNT/sec.img" \
	2>/dev/null || true)
case $X in
*secret*) not_ok "user.imgcache.origin shows a secret: $X" ;;
*127.0.0.1*) ok "user.imgcache.origin is masked: $X" ;;
*) not_ok "user.imgcache.origin unreadable (getfattr missing?): '$X'" ;;
esac

good_ok "at the end"

# ------------------------------------------------------------ the index

stop_imgcache "$MNT"
check "debug log written" grep -q ': debug: ' "$LOG"
assert_eq "no 'secret' in the daemon's log (user:pass@, ?token=)" 0 \
	"$(cat "$T"/imgcache.*.log | grep -c secret || true)"

q() { sqlite3 "$CACHE/index.db" "$1"; }
blocks_of() {
	q "SELECT count(*) FROM blocks b JOIN templates t ON t.id = b.tid
	   WHERE t.name = '$1'"
}
# Bytes allocated on disk by a template's data files.
disk_of() {
	find "$CACHE/data" -name "$1.*" -exec stat -c %b {} + 2>/dev/null |
		awk '{ s += $1 * 512 } END { printf "%d\n", s }'
}
for n in $MOUNTED; do
	assert_eq "$n: no block in the index" 0 "$(blocks_of "$n")"
	assert_eq "$n: no byte in its data file" 0 "$(disk_of "$n")"
done
for n in $ABSENT; do
	assert_eq "$n: not in the index" 0 \
		"$(q "SELECT count(*) FROM templates WHERE name = '$n'")"
done
for n in $EXACT good.img; do
	b=$(blocks_of "$n")
	if [ "$b" -gt 0 ]; then
		ok "$n: its blocks were cached ($b)"
	else
		not_ok "$n: its blocks were cached ($b)"
	fi
done
# The previous generation is kept (index rows and data file) for delta
# fills from it while the daemon runs; a restart drops it (below).
assert_le "flip.img: the current generation and at most the previous one are indexed" \
	"$(q "SELECT count(DISTINCT b.gen) FROM blocks b JOIN templates t
	      ON t.id = b.tid WHERE t.name = 'flip.img'")" 2
assert_eq "flip.img: every block of the new content is indexed" 16 \
	"$(q "SELECT count(*) FROM blocks b JOIN templates t ON t.id = b.tid
	      WHERE t.name = 'flip.img' AND b.gen = t.generation")"

# Restart: what was stored reads back as the origin's bytes with every
# server gone, and each stored block passes its checksum.  (Few templates:
# the daemon checks each unreachable origin for up to connect_timeout at
# start, one after the other.)
stop_pid "$PID_A"
stop_pid "$PID_B"
stop_pid "$PID_C"
EXACT="503once.img r429.img"
{
	global_section
	printf 'connect_timeout = 1s\nrevalidate = 0\n'
	tmpl flip.img "$C/etagflip/flip.img"
	tmpl 503once.img "$A/503once/503once.img"
	tmpl r429.img "$A/429/r429.img"
} >"$T/conf2"
t0=$(now_ms)
start_imgcache "$T/conf2" "$MNT"
note "restart with the servers down: mounted in $(($(now_ms) - t0)) ms"
bounded dd if="$MNT/flip.img" of="$T/flip.out4" bs=64K iflag=direct \
	status=none 2>/dev/null || true
assert_same "restart, servers down: flip.img serves the new content" \
	"$T/flip.out4" "$T/flip.new"
for n in $EXACT; do
	read_exact "$n" 1 direct
done
stop_imgcache "$MNT"
assert_eq "after a restart, flip.img's previous generation is gone from the index" 0 \
	"$(q "SELECT count(*) FROM blocks b JOIN templates t ON t.id = b.tid
	      WHERE t.name = 'flip.img' AND b.gen != t.generation")"
assert_eq "after a restart, one data file of flip.img is left" 1 \
	"$(find "$CACHE/data" -name 'flip.img.*' ! -name '*.imgcache-manifest' | wc -l)"
assert_eq "no 'secret' in the daemon's logs after the restart" 0 \
	"$(cat "$T"/imgcache.*.log | grep -c secret || true)"
[ -z "$HAVE_NGINX" ] || stop_pid "$NGINX_PID"
