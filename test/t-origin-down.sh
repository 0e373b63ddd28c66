#!/bin/sh
# t-origin-down: an origin host that refuses connections is marked down for
# all its templates.  Two templates on one nginx, both partly cached, and a
# third with a mirror on a second nginx; nginx stopped (connections refused
# at once), origin_timeout = 20s: cached bytes are served exactly, every
# miss fails with EIO within 5 s (not origin_timeout each), the template
# with the mirror still reads through it, the xattr, the control socket and
# imgcache-report (table, --json, --prometheus) say down; nginx started
# again on the same port: within a bounded wait the state is up and misses
# are filled with the right bytes, without restarting imgcache.  One log
# line when the host went down, one when it came back.  Then a slow but
# answering origin (faultsrv slow/: 1.5 s before each answer, a paced
# body) serves correct bytes and is never marked down.  Last, connects to
# the first host time out (a full accept queue drops SYNs): the host is
# down after one connect_timeout, later misses fail at once, and it
# recovers the same way.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_nginx
command -v curl >/dev/null 2>&1 || skip "curl not installed"
command -v getfattr >/dev/null 2>&1 || skip "getfattr not installed"
require_local_http
REPORT=$top_builddir/tools/imgcache-report
[ -x "$REPORT" ] || fail "$REPORT is not built (run make)"

SIZE=$((4 * 1048576))
for f in a b c; do
	make_file_bytes "$T/www/$f.img" "$SIZE"
	cp "$T/www/$f.img" "$T/$f.orig"
done
make_file_bytes "$T/d.orig" "$SIZE"
start_faultsrv fs "$T/d.orig" --delay 1.5
FPORT=$PORT

PORT=$(free_port)
PORT2=$(free_port)
# nginx 1 (the primary host) in $T/nginx, nginx 2 (the mirror host, same
# files, hence the same ETags) in $T/nginx2.
nginx_config "$PORT2" "access_log $T/nginx2/access.log;"
mkdir -p "$T/nginx2/tmp"
sed "s|$T/nginx/|$T/nginx2/|g" "$T/nginx/nginx.conf" >"$T/nginx2/nginx.conf"
nginx_config "$PORT" "access_log $T/nginx/access.log;"

answers() { curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$1/a.img"; }
# start_nginx DIR PORT: sets NGINX_PID (of the last one started).
start_nginx() {
	"$NGINX" -p "$1/" -c "$1/nginx.conf" >"$1/stderr" 2>&1 &
	NGINX_PID=$!
	_register "$NGINX_PID" -
	wait_for 10 answers "$2" || {
		show_log "$1/error.log"
		fail "nginx on port $2 did not start"
	}
}
start_nginx "$T/nginx" "$PORT"
PID1=$NGINX_PID
start_nginx "$T/nginx2" "$PORT2"
PID2=$NGINX_PID

{
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	printf 'origin_timeout = 20s\nconnect_timeout = 2s\nrevalidate = 0\n'
	# No readahead: which blocks are cached is what the test read.
	printf 'readahead = 0\n'
	for f in a b; do
		printf '\n[template %s.img]\norigin = http://127.0.0.1:%s/%s.img\n' \
			"$f" "$PORT" "$f"
	done
	printf '\n[template c.img]\norigin = http://127.0.0.1:%s/c.img\n' "$PORT"
	printf 'mirror = http://127.0.0.1:%s/c.img\n' "$PORT2"
	printf '\n[template d.img]\norigin = http://127.0.0.1:%s/slow/d.img\n' \
		"$FPORT"
} >"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"

state_of() {
	getfattr --only-values -n user.imgcache.origin_state "$MNT/$1" \
		2>/dev/null || echo "(no xattr)"
}
is_state() { case $(state_of "$1") in "$2"*) return 0 ;; esac; return 1; }
# blk FILE N OUT: read block N of the mount's FILE (O_DIRECT, one request).
blk() {
	bounded dd if="$MNT/$1" of="$3" bs=64K skip="$2" count=1 iflag=direct \
		status=none
}
# same_blk FILE N: block N read through the mount equals the origin's.
same_blk() {
	blk "$1" "$2" "$T/got" 2>/dev/null || return 1
	extract "$T/${1%.img}.orig" $(($2 * BS)) "$BS" "$T/want"
	cmp -s "$T/got" "$T/want"
}

# --- 1. everything up; the first 1 MiB of a, b, c cached
for f in a b c; do
	bounded dd if="$MNT/$f.img" of="$T/$f.1m" bs=1M count=1 iflag=direct \
		status=none
	head -c 1048576 "$T/$f.orig" >"$T/$f.1m.orig"
	assert_same "$f.img: first MiB read with the origin up" "$T/$f.1m" \
		"$T/$f.1m.orig"
	assert_eq "$f.img: origin_state with the origin up" up "$(state_of "$f.img")"
done

# --- 2. primary host stopped: connections refused at once
stop_pid "$PID1"
answers "$PORT" && fail "nginx 1 still answers"
for f in a b; do
	bounded dd if="$MNT/$f.img" of="$T/$f.1m" bs=1M count=1 iflag=direct \
		status=none
	assert_same "$f.img: cached bytes served with the host down" \
		"$T/$f.1m" "$T/$f.1m.orig"
done
total=0
n=0
slow=0
for i in 1 2 3; do
	for f in a b; do
		k=$((16 + i * 5))
		t0=$(now_ms)
		if blk "$f.img" "$k" "$T/miss" 2>"$T/miss.err"; then
			not_ok "$f.img block $k: a miss with the host down must fail"
		elif ! grep -q "Input/output error" "$T/miss.err"; then
			not_ok "$f.img block $k: EIO expected, got: $(cat "$T/miss.err")"
		fi
		ms=$(($(now_ms) - t0))
		total=$((total + ms))
		n=$((n + 1))
		[ "$ms" -le 5000 ] || slow=$((slow + 1))
		note "miss $n ($f.img block $k): $ms ms"
	done
done
assert_eq "each of $n misses on 2 templates failed within 5 s" 0 "$slow"
assert_le "the $n misses took far less than $n x origin_timeout (ms)" \
	"$total" 15000
for f in a b; do
	check "$f.img: origin_state says down" is_state "$f.img" "down since "
done
check "c.img (mirror on a healthy host): origin_state says degraded" \
	is_state c.img "degraded since "
check "c.img: an uncached block is read through the mirror" same_blk c.img 40
check "c.img: its primary is skipped: a second block also reads" \
	same_blk c.img 41
check "d.img (another host): origin_state up" is_state d.img up

RC=0
"$REPORT" --config "$T/conf" --no-advance >"$T/rep" 2>&1 || RC=$?
assert_eq "imgcache-report exits 1 with a host down" 1 "$RC"
check "report: the reasons name the down host" \
	grep -q "origin host http://127.0.0.1:$PORT down since" "$T/rep"
check "report: a.img's STATE column says down" \
	grep -Eq "^a\.img .* down +http://127\.0\.0\.1:$PORT/a\.img$" "$T/rep"
check "report: c.img's STATE column says degraded" \
	grep -Eq "^c\.img .* degraded +http://" "$T/rep"
"$REPORT" --config "$T/conf" --no-advance --json >"$T/rep.json" 2>&1 || true
check "report --json: per template and per host state" python3 - \
	"$T/rep.json" "$PORT" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = {r["name"]: r for r in d["templates"]}
assert t["a.img"]["origin_state"] == "down", t["a.img"]
assert t["b.img"]["origin_state"] == "down"
assert t["c.img"]["origin_state"] == "degraded"
assert t["d.img"]["origin_state"] == "up"
assert t["a.img"]["origin_down_since"] > 0
h = {x["host"]: x for x in d["origin_hosts"]}
k = "http://127.0.0.1:%s" % sys.argv[2]
assert h[k]["state"] == "down" and h[k]["down_since"] > 0, h
assert any("down since" in r for r in d["attention_reasons"])
PYEOF
"$REPORT" --config "$T/conf" --prometheus >"$T/rep.prom" 2>&1 || true
check "report --prometheus: imgcache_origin_up 0 for a.img" \
	grep -q '^imgcache_origin_up{template="a.img"} 0$' "$T/rep.prom"
check "report --prometheus: imgcache_origin_up 1 for d.img" \
	grep -q '^imgcache_origin_up{template="d.img"} 1$' "$T/rep.prom"
check "report --prometheus: the host is down" grep -q \
	"^imgcache_origin_host_up{host=\"http://127.0.0.1:$PORT\"} 0$" \
	"$T/rep.prom"

# --- 3. the host is back on the same port: reads recover, no restart
start_nginx "$T/nginx" "$PORT"
PID1=$NGINX_PID
t0=$(now_ms)
wait_for 60 is_state a.img up ||
	not_ok "a.img: origin_state up within 60 s of the host's return"
note "state up $(($(now_ms) - t0)) ms after nginx answered again"
check "b.img: origin_state up (shared host)" is_state b.img up
check "c.img: origin_state up" is_state c.img up
for f in a b; do
	check "$f.img: a miss is filled with the origin's bytes" \
		same_blk "$f.img" 21
done
bounded cat "$MNT/a.img" >"$T/a.all"
assert_same "a.img: a whole read equals the origin" "$T/a.all" "$T/a.orig"
assert_eq "one 'is down' log line for the host" 1 \
	"$(grep -c "origin host http://127.0.0.1:$PORT is down" "$IMGCACHE_LOG")"
assert_eq "one 'is up again' log line for the host" 1 \
	"$(grep -c "origin host http://127.0.0.1:$PORT is up again" \
		"$IMGCACHE_LOG")"
"$REPORT" --config "$T/conf" --no-advance --json >"$T/rep.json" 2>&1 || true
check "report --json: every template up again" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert all(r["origin_state"] == "up" for r in d["templates"]), d["templates"]
assert all(h["state"] == "up" for h in d["origin_hosts"])' "$T/rep.json"

# --- 4. slow but answering: served, never marked down
for k in 3 30 50; do
	check "d.img block $k from the slow origin equals its bytes" \
		same_blk d.img "$k"
	check "d.img: still up after block $k" is_state d.img up
done
check "slow origin: its requests were answered 206" \
	grep -q "^GET /slow/d.img bytes=.* 206 " "$T/fs.log"
assert_eq "slow origin host never logged as down" 0 \
	"$(grep -c "origin host http://127.0.0.1:$FPORT is down" "$IMGCACHE_LOG")"

# --- 5. connect timeouts: the host's accept queue full, SYNs dropped
# nginx 1 replaced on its port by a listener with a backlog of 0 whose one
# queue slot is taken: every connect times out (connect_timeout = 2s).
stop_pid "$PID1"
python3 -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(0)
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").close()
time.sleep(300)' "$PORT" "$T/bh.ready" 2>"$T/bh.err" &
BH=$!
_register "$BH" -
wait_for 10 test -e "$T/bh.ready" || fail "the blackhole listener did not start"
total=0
slow=0
for k in 40 45 50 55; do
	t0=$(now_ms)
	blk b.img "$k" "$T/miss" 2>/dev/null &&
		not_ok "b.img block $k: a miss with connects timing out must fail"
	ms=$(($(now_ms) - t0))
	note "miss of b.img block $k with connects timing out: $ms ms"
	total=$((total + ms))
	[ "$ms" -le 5000 ] || slow=$((slow + 1))
done
assert_eq "each of 4 misses failed within 5 s (connect_timeout 2 s)" 0 "$slow"
assert_le "the 4 misses together: about one connect_timeout (ms)" \
	"$total" 8000
check "b.img: origin_state down again (connect timeouts)" \
	is_state b.img "down since "
stop_pid "$BH"
start_nginx "$T/nginx" "$PORT"
wait_for 60 is_state b.img up ||
	not_ok "b.img: up within 60 s after the connect timeouts ended"
check "b.img: block 40 filled after the connect timeouts" same_blk b.img 40
assert_eq "two 'is down' log lines for the host (refused, timeouts)" 2 \
	"$(grep -c "origin host http://127.0.0.1:$PORT is down" "$IMGCACHE_LOG")"

stop_imgcache "$MNT"
stop_pid "$PID2"
