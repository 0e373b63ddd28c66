#!/bin/sh
# t-fleet: K = 3 imgcache "hosts" (each its own daemon, cache_dir and
# mount point) reading through a site cache tier built from the real
# engines: nginx with proxy_cache + slice as the templates' origin URL
# (dist/nginx-site-cache.conf, a second one as the mirror), and Squid as a
# forward proxy (dist/squid-imgcache.conf, `proxy = SQUID;DIRECT`), in
# front of one nginx origin whose access log counts the bytes it sent.
#  - every host reads every byte exactly (cmp), and the origin sends all
#    hosts together at most 1.05x the union of what they read (through
#    nginx and through Squid);
#  - the template changes at the origin while the tier still holds slices
#    of the old version: a host opening it afterwards reads the new version
#    exactly, and handles opened before the change never see a byte of the
#    new one (each block is old or EIO), on every host;
#  - the same with a block manifest (changed beside the template, same
#    size): each new generation takes its manifest from the origin, not
#    the tier's old copy (which would refuse every new block);
#  - a list of two dead proxies with passwords, then DIRECT: exact bytes,
#    no password in the log or imgcache-report; a group of a proxy that
#    drops SYNs and Squid with connect_timeout above origin_timeout: the
#    hung connect leaves the read time for Squid (every read < deadline);
#  - the site cache is killed (SIGKILL) while the hosts read: they go on
#    with the second site cache (mirror), and, for the Squid template, go
#    DIRECT; bytes exact, no read waits origin_timeout; imgcache-report
#    shows the proxy backed off and DIRECT in use.
# SKIP (77) without FUSE, python3, nginx or squid.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
require_nginx
SQUID=$(command -v squid 2>/dev/null || echo /usr/sbin/squid)
[ -x "$SQUID" ] || skip "squid not installed"
command -v curl >/dev/null 2>&1 || skip "curl not installed"
REPORT=$top_builddir/tools/imgcache-report
MANIFEST=$top_builddir/tools/imgcache-manifest

K=3
OT=3000 # origin_timeout (ms)
MIB=1048576

# ------------------------------------------------------------ servers

mkdir -p "$T/www"
make_file "$T/www/fleet.img" 8
make_file "$T/www/chg.img" 4
make_file "$T/www/fo.img" 16
make_file "$T/www/fo2.img" 16
make_file "$T/www/sq.img" 4
make_file "$T/www/sq2.img" 16
make_file "$T/www/mf.img" 2
make_file "$T/www/cred.img" 2
make_file "$T/www/bh.img" 4
for f in fleet chg fo fo2 sq sq2 mf cred bh; do cp "$T/www/$f.img" "$T/$f.orig"; done
echo probe >"$T/www/probe" # what the start-up checks fetch

# start_nginx NAME: nginx -c $T/NAME/nginx.conf in the foreground; sets
# PID_NAME.
start_nginx() {
	"$NGINX" -p "$T/$1/" -c "$T/$1/nginx.conf" >"$T/$1/stderr" 2>&1 &
	_register $! -
	eval "PID_$1=$!"
}

# nginx_main NAME BODY: a foreground nginx.conf around an http BODY.
nginx_main() {
	mkdir -p "$T/$1/tmp"
	cat >"$T/$1/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $T/$1/error.log;
pid $T/$1/nginx.pid;
events { worker_connections 1024; }
http {
    client_body_temp_path $T/$1/tmp;
    proxy_temp_path $T/$1/tmp;
    fastcgi_temp_path $T/$1/tmp;
    uwsgi_temp_path $T/$1/tmp;
    scgi_temp_path $T/$1/tmp;
    default_type application/octet-stream;
    $2
}
EOF
}

answers() { curl -sf -r 0-0 -o /dev/null "$@"; }

PO=$(free_port)
nginx_main origin "log_format o '\$request_method \$uri \$status \$body_bytes_sent \"\$http_range\" \"\$http_cache_control\"';
    access_log $T/origin/access.log o;
    server { listen 127.0.0.1:$PO; root $T/www; }"
start_nginx origin
wait_for 10 answers "http://127.0.0.1:$PO/probe" || {
	show_log "$T/origin/error.log"
	fail "origin nginx did not start"
}

# The site caches: the shipped config, pointed at this origin.
site_cache() {
	_p=$(free_port)
	mkdir -p "$T/$1/store"
	sed -e "s|/var/cache/nginx/imgcache|$T/$1/store|" \
		-e "s|max_size=100g|max_size=1g|" \
		-e "s|keys_zone=imgcache:256m|keys_zone=imgcache:8m|" \
		-e "s|server images.example.org:80;|server 127.0.0.1:$PO;|" \
		-e "s|Host images.example.org;|Host 127.0.0.1:$PO;|" \
		-e "s|listen 8080;|listen 127.0.0.1:$_p;|" \
		-e "s|/var/log/nginx/imgcache-cache.log|$T/$1/access.log|" \
		"$top_srcdir/dist/nginx-site-cache.conf" >"$T/$1.site.conf"
	nginx_main "$1" "include $T/$1.site.conf;"
	start_nginx "$1"
	wait_for 10 answers "http://127.0.0.1:$_p/probe" || {
		show_log "$T/$1/error.log"
		fail "site cache $1 did not start"
	}
	eval "P_$1=$_p"
}
site_cache cacheA
site_cache cacheB
# shellcheck disable=SC2154 # set by site_cache
CA=http://127.0.0.1:$P_cacheA
# shellcheck disable=SC2154
CB=http://127.0.0.1:$P_cacheB
grep -q "slice 64k;" "$T/cacheA.site.conf" || fail "dist config: no slice 64k"
SLICE=65536

# Squid: the shipped snippet, with this machine's paths and port.
PS=$(free_port)
mkdir -p "$T/squid"
chmod 711 "$T" # squid drops to its own user, which must reach its files
SQUID_USER=
if [ "$(id -u)" = 0 ] && id proxy >/dev/null 2>&1; then
	SQUID_USER="cache_effective_user proxy"
	chown proxy "$T/squid"
fi
sed -e "s|^acl imgcache_hosts src .*|acl imgcache_hosts src 127.0.0.0/8|" \
	-e "s|^cache_dir aufs /var/spool/squid 200000|cache_dir ufs $T/squid/spool 512|" \
	-e "s|^cache_mem 1024 MB|cache_mem 16 MB|" \
	"$top_srcdir/dist/squid-imgcache.conf" >"$T/squid/imgcache.conf"
cat >"$T/squid/squid.conf" <<EOF
http_port 127.0.0.1:$PS
pid_filename $T/squid/squid.pid
$SQUID_USER
include $T/squid/imgcache.conf
http_access deny all
access_log stdio:$T/squid/access.log squid
cache_log $T/squid/cache.log
cache_store_log none
coredump_dir $T/squid
shutdown_lifetime 1 seconds
EOF
bounded "$SQUID" -N -z -f "$T/squid/squid.conf" >"$T/squid/z.log" 2>&1 || {
	show_log "$T/squid/z.log"
	fail "squid -z failed"
}
"$SQUID" -N -f "$T/squid/squid.conf" >"$T/squid/stderr" 2>&1 &
_register $! -
PID_squid=$!
wait_for 20 answers -x "http://127.0.0.1:$PS" "http://127.0.0.1:$PO/probe" || {
	show_log "$T/squid/cache.log"
	fail "squid did not start"
}
ORIGIN_LOG=$T/origin/access.log

# origin_bytes URI: body bytes the origin sent for URI (GETs).
origin_bytes() {
	awk -v u="$1" '$1 == "GET" && $2 == u { s += $4 } END { printf "%d\n", s }' \
		"$ORIGIN_LOG"
}

# union_read LOG URI: bytes of the union of the ranges the hosts asked a
# site cache for (what they read from the tier, readahead included).
union_read() {
	grep "\"GET $2 " "$1" | grep -o 'bytes=[0-9]*-[0-9]*' |
		awk -F'[=-]' '{ print $2, $3 + 1 }' | sort -n -k1,1 |
		awk '$1 > end { u += $2 - $1; end = $2; next }
		     $2 > end { u += $2 - end; end = $2 }
		     END { printf "%d\n", u }'
}

# A proxy on a host that drops SYNs (its accept queue full): a connect to
# it hangs until its timeout.
cat >"$T/blackhole.py" <<'EOF'
import os, socket, sys, time
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(0)
port = l.getsockname()[1]
fill = []
for _ in range(8):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    fill.append(c)
time.sleep(0.5)
open(sys.argv[1] + ".tmp", "w").write("%d\n" % port)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    time.sleep(60)
EOF
python3 "$T/blackhole.py" "$T/bh.port" &
_register $! -
wait_for 10 test -s "$T/bh.port" || fail "blackhole proxy did not start"
PBH=$(cat "$T/bh.port")
if bounded curl -s -o /dev/null --connect-timeout 1 -x "http://127.0.0.1:$PBH" \
	"http://127.0.0.1:$PO/probe"; then
	fail "the blackhole proxy accepted a connection"
fi

# ------------------------------------------------------------ hosts

host_conf() {
	global_section | sed "s|$CACHE|$T/h$1/cache|"
	cat <<EOF
revalidate = 0
readahead = 1M
[template fleet.img]
origin = $CA/fleet.img
mirror = $CB/fleet.img
[template chg.img]
origin = $CA/chg.img
[template mf.img]
origin = $CA/mf.img
manifest = auto
[template fo.img]
origin = $CA/fo.img
mirror = $CB/fo.img
[template fo2.img]
origin = $CA/fo2.img
mirror = $CB/fo2.img
[template sq.img]
origin = http://127.0.0.1:$PO/sq.img
proxy = http://127.0.0.1:$PS;DIRECT
[template sq2.img]
origin = http://127.0.0.1:$PO/sq2.img
proxy = http://127.0.0.1:$PS;DIRECT
[template bh.img]
origin = http://127.0.0.1:$PO/bh.img
proxy = http://127.0.0.1:$PBH|http://127.0.0.1:$PS
revalidate = 1h
[template cred.img]
origin = http://127.0.0.1:$PO/cred.img
proxy = http://u:secret1@127.0.0.1:$PD1 | http://u:secret2@127.0.0.1:$PD2;DIRECT
EOF
}
PD1=$(free_port) # nothing listens there: dead proxies
PD2=$(free_port)

for h in $(seq 1 $K); do
	mkdir -p "$T/h$h"
	host_conf "$h" >"$T/h$h/imgcache.conf"
	start_imgcache "$T/h$h/imgcache.conf" "$T/h$h/mnt"
	eval "LOG_$h=\$IMGCACHE_LOG"
done

# on_all CMD: run the shell command CMD with $h set to each host, in
# parallel; fail if any fails.
on_all() {
	_pids=
	for h in $(seq 1 $K); do
		(eval "$1") &
		_pids="$_pids $!"
	done
	_rc=0
	for _p in $_pids; do wait "$_p" || _rc=1; done
	return $_rc
}

# ------------------------------------------------------------ 1. exact bytes

on_all 'bounded dd if="$T/h$h/mnt/fleet.img" of="$T/h$h/fleet.got" bs=1M status=none' ||
	not_ok "a host failed to read fleet.img"
for h in $(seq 1 $K); do
	assert_same "host $h: fleet.img exact through the nginx site cache" \
		"$T/fleet.orig" "$T/h$h/fleet.got"
done
U=$(union_read "$T/cacheA/access.log" /fleet.img)
assert_le "origin bytes for $K hosts (fleet.img) <= 1.05x the union read ($U)" \
	"$(origin_bytes /fleet.img)" $((U * 105 / 100))
# Overlapping ranges, different on each host, in parallel.
on_all 'extract "$T/h$h/mnt/fo.img" $(((h - 1) * 3 * MIB)) $((6 * MIB)) "$T/h$h/fo.part"' ||
	not_ok "a host failed to read a range of fo.img"
for h in $(seq 1 $K); do
	extract "$T/fo.orig" $(((h - 1) * 3 * MIB)) $((6 * MIB)) "$T/fo.want"
	assert_same "host $h: its range of fo.img exact" "$T/fo.want" \
		"$T/h$h/fo.part"
done
# The tier reads whole slices: the union rounded out to them.
U=$(union_read "$T/cacheA/access.log" /fo.img)
assert_le "origin bytes for overlapping ranges <= 1.05x their union ($U)" \
	"$(origin_bytes /fo.img)" $((U * 105 / 100 + SLICE))
HITS=$(awk '$NF ~ /^[0-9.]+$/ { print $(NF - 1) }' "$T/cacheA/access.log" |
	grep -c HIT || true)
note "site cache A: $HITS hits of $(wc -l <"$T/cacheA/access.log") requests"

# ------------------------------------------------------------ 2. a change

# held PATH OUT: open PATH now (touch OUT.ready), wait for OUT.go, then
# read it block by block, classing each block as old, new or err.
cat >"$T/held.py" <<'EOF'
import os, sys, time
path, old, new, out = sys.argv[1:5]
fd = os.open(path, os.O_RDONLY)
open(out + ".ready", "w").close()
end = time.time() + 60
while not os.path.exists(out + ".go") and time.time() < end:
    time.sleep(0.02)
a, b = open(old, "rb").read(), open(new, "rb").read()
n = {"old": 0, "new": 0, "err": 0, "other": 0}
for off in range(0, len(a), 65536):
    try:
        got = os.pread(fd, 65536, off)
    except OSError:
        n["err"] += 1
        continue
    n["old" if got == a[off:off + 65536] else
      "new" if got == b[off:off + 65536] else "other"] += 1
open(out, "w").write(" ".join("%s %d" % kv for kv in sorted(n.items())) + "\n")
EOF

# Host 1 reads the first slice: the tier now holds it, old version.
extract "$T/h1/mnt/chg.img" 0 $SLICE "$T/chg.part"
extract "$T/chg.orig" 0 $SLICE "$T/chg.want"
assert_same "chg.img: first slice read before the change" "$T/chg.want" \
	"$T/chg.part"
# Hosts 1 and 3 hold it open across the change.
for h in 1 3; do
	python3 "$T/held.py" "$T/h$h/mnt/chg.img" "$T/chg.orig" "$T/chg.new" \
		"$T/held$h" &
	eval "HELD_$h=$!"
	wait_for 10 test -e "$T/held$h.ready" || fail "host $h: open of chg.img"
done
make_file "$T/chg.new" 4
touch -d @$(($(stat -c %Y "$T/chg.orig") + 100)) "$T/chg.new"
cp -p "$T/chg.new" "$T/www/chg.img.tmp"
mv "$T/www/chg.img.tmp" "$T/www/chg.img"
grep -c "GET /chg.img" "$T/cacheA/access.log" >/dev/null ||
	fail "the site cache saw no read of chg.img before the change"
# Host 3 reads with the old handle first (the tier's slice of the old
# version is then served to it), then host 2 opens: the new version,
# every byte, though the tier still held an old slice.
touch "$T/held3.go"
wait "$HELD_3" || true
bounded dd if="$T/h2/mnt/chg.img" of="$T/h2/chg.got" bs=1M status=none ||
	not_ok "host 2: read of chg.img after the change failed"
assert_same "host 2: chg.img opened after the change is the new version" \
	"$T/chg.new" "$T/h2/chg.got"
touch "$T/held1.go"
wait "$HELD_1" || true
for h in 1 3; do
	R=$(cat "$T/held$h" 2>/dev/null || echo "none")
	case $R in
	"err "*" new 0 old "*" other 0") ok "host $h: handle opened before the change: old or EIO, never new ($R)" ;;
	*) not_ok "host $h: handle opened before the change mixed versions ($R)" ;;
	esac
done
for h in 1 3; do
	bounded dd if="$T/h$h/mnt/chg.img" of="$T/h$h/chg.got" bs=1M \
		status=none || not_ok "host $h: new open of chg.img failed"
	assert_same "host $h: a new open reads the new version" \
		"$T/chg.new" "$T/h$h/chg.got"
done

# A change with a block manifest: the tier holds the old manifest (the
# same size as the new one), and a host's new generation must not take it
# from there (it would refuse every block of the new version: EIO).
"$MANIFEST" -o "$T/www/mf.img.imgcache-manifest" "$T/www/mf.img" \
	>/dev/null || fail "imgcache-manifest failed"
bounded dd if="$T/h1/mnt/mf.img" of="$T/h1/mf.got" bs=1M status=none ||
	not_ok "host 1: read of mf.img failed"
assert_same "host 1: mf.img exact, checked against its manifest" \
	"$T/mf.orig" "$T/h1/mf.got"
check "host 1 verified mf.img against its manifest" \
	grep -q "template mf.img: generation .* verified against" "$LOG_1"
make_file "$T/mf.new" 2
touch -d @$(($(stat -c %Y "$T/mf.orig") + 100)) "$T/mf.new"
"$MANIFEST" -o "$T/www/mf.img.imgcache-manifest.tmp" "$T/mf.new" \
	>/dev/null || fail "imgcache-manifest failed"
cp -p "$T/mf.new" "$T/www/mf.img.tmp"
mv "$T/www/mf.img.tmp" "$T/www/mf.img"
mv "$T/www/mf.img.imgcache-manifest.tmp" "$T/www/mf.img.imgcache-manifest"
for h in 2 1; do
	bounded dd if="$T/h$h/mnt/mf.img" of="$T/h$h/mf.got" bs=1M \
		status=none || not_ok "host $h: read of the new mf.img failed"
	assert_same "host $h: mf.img after the change: the new version, its new manifest" \
		"$T/mf.new" "$T/h$h/mf.got"
done
N=$(awk '$1 == "GET" && $2 == "/mf.img.imgcache-manifest"' "$ORIGIN_LOG" |
	wc -l)
check "each generation's manifest came from the origin ($N GETs: 1 + 2)" \
	[ "$N" -ge 3 ]

# ------------------------------------------------------------ 3. Squid

on_all 'bounded dd if="$T/h$h/mnt/sq.img" of="$T/h$h/sq.got" bs=1M status=none' ||
	not_ok "a host failed to read sq.img"
for h in $(seq 1 $K); do
	assert_same "host $h: sq.img exact through Squid" "$T/sq.orig" \
		"$T/h$h/sq.got"
done
assert_le "origin bytes for $K hosts through Squid <= 1.05x the file" \
	"$(origin_bytes /sq.img)" $((4 * MIB * 105 / 100))
N=$(grep -c "sq.img" "$T/squid/access.log" || true)
check "Squid carried the hosts' requests ($N)" [ "$N" -ge $K ]

# A list of two dead proxies (with credentials) and DIRECT: the reads go
# direct, and no log line, health entry or report shows a password.
bounded dd if="$T/h1/mnt/cred.img" of="$T/h1/cred.got" bs=1M status=none ||
	not_ok "host 1: read of cred.img (dead proxies;DIRECT) failed"
assert_same "host 1: cred.img exact past two dead proxies" "$T/cred.orig" \
	"$T/h1/cred.got"
bounded "$REPORT" --cache-dir "$T/h1/cache" --no-advance >"$T/cred.report" \
	2>&1 || true
bounded "$REPORT" --cache-dir "$T/h1/cache" --json --no-advance \
	>>"$T/cred.report" 2>&1 || true
check "imgcache-report names the proxy list's health entry" \
	grep -q "proxies http://\*\*\*@127.0.0.1:$PD1|http://\*\*\*@127.0.0.1:$PD2;DIRECT" \
	"$T/cred.report"
check "no password in imgcache-report or the log" \
	sh -c "! grep -l secret '$T/cred.report' '$LOG_1'"

# ------------------------------------------------------------ 4. failures

# timed PATH OUT [GO]: read PATH in 1 MiB preads into OUT, touch OUT.half
# at the middle (with GO: then wait, 30 s at most, until the file GO
# exists, so that no host has read past the middle when the test kills a
# server), print the slowest read's ms.
cat >"$T/timed.py" <<'EOF'
import os, sys, time
path, out = sys.argv[1], sys.argv[2]
go = sys.argv[3] if len(sys.argv) > 3 else None
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
worst = 0
with open(out, "wb") as f:
    for o in range(0, size, 1 << 20):
        if o == size // 2:
            open(out + ".half", "w").close()
            until = time.monotonic() + 30
            while go and not os.path.exists(go) and time.monotonic() < until:
                time.sleep(0.01)
        t = time.monotonic()
        f.write(os.pread(fd, 1 << 20, o))
        worst = max(worst, (time.monotonic() - t) * 1000)
print(int(worst))
EOF
all_half() {
	for h in $(seq 1 "$K"); do [ -e "$T/h$h/$1.got.half" ] || return 1; done
}
# kill_mid NAME PID ORIG WHAT: every host reads NAME; when each is half
# way, PID dies (SIGKILL); the rest must come, exact, in time.
kill_mid() {
	# shellcheck disable=SC2034 # used in on_all's command
	KM=$1 # (on_all's own $1 is its command)
	rm -f "$T/$KM.go"
	on_all 'python3 "$T/timed.py" "$T/h$h/mnt/$KM" "$T/h$h/$KM.got" "$T/$KM.go" >"$T/h$h/$KM.ms"' &
	_readers=$!
	wait_for 30 all_half "$1" || not_ok "$1: the hosts did not get half way"
	kill -KILL "$2"
	: >"$T/$KM.go" # every host reads its second half after the kill
	wait "$_readers" || not_ok "$1: a host's read failed after the kill"
	_unregister "$2"
	for h in $(seq 1 $K); do
		assert_same "host $h: $1 exact after $4 died mid-run" "$3" \
			"$T/h$h/$1.got"
		assert_le "host $h: $1: slowest 1 MiB read (ms) < origin_timeout" \
			"$(cat "$T/h$h/$1.ms")" $((OT - 1))
	done
}
# A group of a proxy that drops SYNs and Squid, connect_timeout (5 s)
# above origin_timeout (3 s): a connect that hangs must leave the read
# time for Squid (before: the hung connect took the whole deadline, EIO).
# The start-up check backed the dead proxy off long ago, and no open
# checks again (revalidate 1h): the group's turns give a read to it.
for h in $(seq 1 $K); do
	python3 "$T/timed.py" "$T/h$h/mnt/bh.img" "$T/h$h/bh.got" \
		>"$T/h$h/bh.ms" 2>"$T/h$h/bh.err" ||
		not_ok "host $h: read of bh.img failed: $(tail -n 1 "$T/h$h/bh.err")"
	assert_same "host $h: bh.img exact past a proxy that drops SYNs" \
		"$T/bh.orig" "$T/h$h/bh.got"
	assert_le "host $h: bh.img: slowest 1 MiB read (ms) < origin_timeout" \
		"$(cat "$T/h$h/bh.ms")" $((OT - 1))
done

# Reverse proxy: site cache A dies, the mirror (site cache B) serves.
# shellcheck disable=SC2154 # set by start_nginx
kill_mid fo2.img "$PID_cacheA" "$T/fo2.orig" "site cache A"
check "site cache B served the rest of fo2.img" \
	grep -q "GET /fo2.img" "$T/cacheB/access.log"
# Forward proxy: Squid dies, the hosts go DIRECT.
kill_mid sq2.img "$PID_squid" "$T/sq2.orig" "Squid"
N=$(awk '$1 == "GET" && $2 == "/sq2.img" && $5 != "\"-\""' "$ORIGIN_LOG" |
	wc -l)
check "the hosts read sq2.img from the origin directly ($N range GETs)" \
	[ "$N" -gt 0 ]
# What a host says about its proxies.
bounded "$REPORT" --cache-dir "$T/h1/cache" --json --no-advance \
	>"$T/report.json" 2>"$T/report.err" || true
python3 - "$T/report.json" "$PS" >"$T/proxies" 2>&1 <<'EOF' || true
import json, sys
d = json.load(open(sys.argv[1]))
for p in d["proxies"]:
    print(p["proxy"], p["state"], p["in_use"], p["errors"])
EOF
check "imgcache-report: the dead proxy is backed off with errors" \
	grep -q "^http://127.0.0.1:$PS backoff False [1-9]" "$T/proxies"
check "imgcache-report: DIRECT (to the origin host) is in use" \
	grep -q "^DIRECT http://127.0.0.1:$PO ok True" "$T/proxies"
if [ "$_failed" != 0 ]; then
	show_log "$T/proxies"
	show_log "$T/report.err"
fi

for h in $(seq 1 $K); do stop_imgcache "$T/h$h/mnt"; done
exit "$_failed"
