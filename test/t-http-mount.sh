#!/bin/sh
# t-http-mount: imgcache mounted over a real nginx on 127.0.0.1: full and
# random reads equal the file; 8 concurrent cold readers cost the server at
# most the file size + one block per reader (counted from nginx's access
# log); with nginx stopped a restart serves cached blocks and fails misses
# with EIO; when nginx is back fills resume; a template replaced on the
# server (same size) is a new generation with no mixed bytes.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_nginx
command -v curl >/dev/null 2>&1 || skip "curl not installed"
require_local_http

BS=65536
SIZE=$((24 * 1048576 + 4321))
make_file_bytes "$T/www/t.img" "$SIZE"
cp "$T/www/t.img" "$T/t.orig"
mkdir -p "$T/nginx/tmp"

nginx_conf() {
	nginx_config "$PORT" "log_format t '\$request|\$status|\$body_bytes_sent|\$http_range';
    access_log $T/nginx/access.log t;"
}
answers() { curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/t.img"; }
start_nginx() {
	nginx_conf
	"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
	NGINX_PID=$!
	_register "$NGINX_PID" -
	wait_for 10 answers || {
		show_log "$T/nginx/error.log"
		fail "nginx did not start"
	}
}
# GET bytes served for t.img from access-log line $1 on.
served() {
	awk -F'|' -v from="$1" 'NR >= from && $1 ~ /^GET \/t.img/ { s += $3 }
		END { printf "%d\n", s }' "$T/nginx/access.log"
}
loglines() { wc -l <"$T/nginx/access.log"; }
gen_of() {
	getfattr --only-values -n user.imgcache.generation "$1" 2>/dev/null
}

PORT=$(free_port)
start_nginx
{
	global_section
	printf 'connect_timeout = 2s\nrevalidate = 0\n'
	printf '\n[template t.img]\norigin = http://127.0.0.1:%s/t.img\n' "$PORT"
} >"$T/conf"
MNT=$T/mnt

# --- 1. 8 concurrent cold readers, then full and random reads
start_imgcache "$T/conf" "$MNT"
from=$(($(loglines) + 1))
pids=""
for i in 0 1 2 3 4 5 6 7; do
	bounded dd if="$MNT/t.img" of="$T/r$i" bs=1M iflag=direct status=none &
	pids="$pids $!"
done
for p in $pids; do wait "$p" || not_ok "a concurrent reader failed"; done
same=0
for i in 0 1 2 3 4 5 6 7; do
	cmp -s "$T/r$i" "$T/t.orig" && same=$((same + 1))
done
assert_eq "8 concurrent cold readers read the origin's bytes" 8 "$same"
assert_le "origin bytes for 8 cold readers <= size + 8 blocks" \
	"$(served "$from")" $((SIZE + 8 * BS))
bounded cat "$MNT/t.img" >"$T/full"
assert_same "buffered full read equals origin" "$T/full" "$T/t.orig"
if bounded "$RANDREAD" -n 1000 -s 3 "$MNT/t.img" "$T/t.orig" >"$T/rr" 2>&1; then
	ok "$(cat "$T/rr")"
else
	not_ok "random reads: $(cat "$T/rr")"
fi
stop_imgcache "$MNT"

# --- 2. restart with the server stopped: cached bytes served, misses EIO
head -c $((8 * 1048576)) "$T/t.orig" >"$T/8m.orig"
stop_pid "$NGINX_PID"
# Forget one cached block, so reading it must go to the (dead) server.
sqlite3 "$CACHE/index.db" "delete from blocks where blk = 200"
start_imgcache "$T/conf" "$MNT"
assert_eq "size known offline" "$SIZE" "$(stat -c %s "$MNT/t.img")"
bounded dd if="$MNT/t.img" of="$T/8m" bs=1M count=8 iflag=direct status=none
assert_same "cached blocks served with the server down" "$T/8m" "$T/8m.orig"
t0=$(now_ms)
if bounded dd if="$MNT/t.img" of="$T/miss" bs=64K skip=200 count=1 \
	iflag=direct status=none 2>"$T/miss.err"; then
	not_ok "a miss with the server down must fail"
else
	check "a miss with the server down fails with EIO" \
		grep -q "Input/output error" "$T/miss.err"
fi
assert_le "the miss fails within origin_timeout + connect_timeout (ms)" \
	$(($(now_ms) - t0)) 5000

# --- 3. server back: fills resume without a restart
start_nginx
# A failed fill is remembered for half a second (the kernel re-asks for a
# page it just failed to read); after that, reads go to the origin again.
read_miss() {
	dd if="$MNT/t.img" of="$T/miss" bs=64K skip=200 count=1 iflag=direct \
		status=none 2>/dev/null
}
wait_for 10 read_miss || not_ok "the miss still fails with the server back"
extract "$T/t.orig" $((200 * BS)) "$BS" "$T/miss.orig"
assert_same "fills resume when the server is back" "$T/miss" "$T/miss.orig"

# --- 4. template replaced on the server, same size: new generation
gen1=$(gen_of "$MNT/t.img")
make_file_bytes "$T/t.new" "$SIZE"
cp "$T/t.new" "$T/www/t.img.tmp"
touch -d '2030-01-01' "$T/www/t.img.tmp"
mv "$T/www/t.img.tmp" "$T/www/t.img"
bounded cat "$MNT/t.img" >"$T/after"
assert_same "new content after the server's template changed" "$T/after" \
	"$T/t.new"
gen2=$(gen_of "$MNT/t.img")
if [ "${gen2:-0}" -gt "${gen1:-0}" ]; then
	ok "generation advanced ($gen1 -> $gen2)"
else
	not_ok "generation advanced ($gen1 -> $gen2)"
fi
stop_imgcache "$MNT"
stop_pid "$NGINX_PID"
