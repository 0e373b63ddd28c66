#!/bin/bash
# shellcheck disable=SC2317 # functions are called indirectly (trap, wait_for)
# squid-range.sh BUILD_DIR — figures for README "Fleets" and
# imgcache.conf(5) FLEETS: how long a host's first read at the END of a
# large template takes through Squid with a cold cache, under the
# shipped dist/squid-imgcache.conf (range_offset_limit none) and with
# range_offset_limit set to a size, and what the origin sends for it.
# One imgcache daemon (proxy = the Squid, never direct), one nginx
# origin, optionally rate-limited (a site's WAN link to its image server).
# Figures, not tests: exits 1 only when a byte read differs.
#
# Environment:
#   SQR_SIZE_MIB=512   the template's size
#   SQR_RATE=          origin nginx limit_rate (e.g. 40m), empty: none
#   SQR_TIMEOUT=30s    the daemon's origin_timeout
#   SQR_LIMITS="none 64"  range_offset_limit values to compare (MB)
#   SQR_COLLAPSED=on   Squid's collapsed_forwarding
#   SQR_WAIT=60        seconds to wait for a whole-object fetch to end
#   SQR_DIR=/var/tmp   parent of the temporary directory
set -u -o pipefail
export LC_ALL=C

B=$(cd "${1:-.}" && pwd)
S=$(cd "$(dirname "$0")/../.." && pwd)
top_builddir=$B top_srcdir=$S
export top_builddir top_srcdir
TMPDIR=${SQR_DIR:-/var/tmp}
export TMPDIR
# shellcheck source=test/lib.sh
. "$S/test/lib.sh"
set +e
require_local_http
SQUID=$(command -v squid 2>/dev/null || echo /usr/sbin/squid)
for x in "$NGINX" "$SQUID" "$B/fs/imgcache"; do
	[ -x "$x" ] || {
		echo "squid-range: needs $x" >&2
		exit 1
	}
done
SIZE_MIB=${SQR_SIZE_MIB:-512}
RATE=${SQR_RATE:-}
OT=${SQR_TIMEOUT:-30s}
SZ=$((SIZE_MIB << 20))
origin_sent() { awk '$2 == "/big.img" { s += $4 } END { printf "%d", s }' "$T/origin/access.log"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }

mkdir -p "$T/www" "$T/origin/tmp"
head -c "$SZ" /dev/urandom >"$T/www/big.img"
echo probe >"$T/www/probe"
PO=$(free_port)
cat >"$T/origin/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $T/origin/error.log;
pid $T/origin/nginx.pid;
events { worker_connections 256; }
http {
    client_body_temp_path $T/origin/tmp;
    proxy_temp_path $T/origin/tmp;
    fastcgi_temp_path $T/origin/tmp;
    uwsgi_temp_path $T/origin/tmp;
    scgi_temp_path $T/origin/tmp;
    default_type application/octet-stream;
    log_format o '\$request_method \$uri \$status \$body_bytes_sent "\$http_range"';
    access_log $T/origin/access.log o;
    server { listen 127.0.0.1:$PO; root $T/www; ${RATE:+limit_rate $RATE;} }
}
EOF
"$NGINX" -p "$T/origin/" -c "$T/origin/nginx.conf" >"$T/origin/stderr" 2>&1 &
_register $! -
answers() { curl -sf -r 0-0 -o /dev/null "$@"; }
wait_for 10 answers "http://127.0.0.1:$PO/probe" || {
	echo "squid-range: the origin did not start" >&2
	exit 1
}
chmod 711 "$T"
ETAG=$(curl -sI "http://127.0.0.1:$PO/big.img" | tr -d '\r' |
	sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
BAD=0

# run_mode LIMIT: a fresh Squid with range_offset_limit LIMIT and a fresh
# daemon; time a curl and an imgcache read of the last 64 KiB, cold.
run_mode() {
	local d=$T/sq.${1// /} ps pid
	mkdir -p "$d"
	ps=$(free_port)
	local user=
	if [ "$(id -u)" = 0 ] && id proxy >/dev/null 2>&1; then
		user="cache_effective_user proxy"
		chown proxy "$d"
	fi
	sed -e "s|^acl imgcache_hosts src .*|acl imgcache_hosts src 127.0.0.0/8|" \
		-e "s|^cache_dir aufs /var/spool/squid 200000|cache_dir ufs $d/spool $((SIZE_MIB * 3))|" \
		-e "s|^cache_mem 1024 MB|cache_mem 16 MB|" \
		-e "s|^range_offset_limit none|range_offset_limit $1|" \
		-e "s|^collapsed_forwarding on|collapsed_forwarding ${SQR_COLLAPSED:-on}|" \
		"$S/dist/squid-imgcache.conf" >"$d/imgcache.conf"
	cat >"$d/squid.conf" <<EOF
http_port 127.0.0.1:$ps
pid_filename $d/squid.pid
$user
include $d/imgcache.conf
http_access deny all
access_log stdio:$d/access.log squid
cache_log $d/cache.log
cache_store_log none
coredump_dir $d
shutdown_lifetime 1 seconds
EOF
	bounded "$SQUID" -N -z -f "$d/squid.conf" >"$d/z.log" 2>&1
	"$SQUID" -N -f "$d/squid.conf" >"$d/stderr" 2>&1 &
	pid=$!
	_register $pid -
	wait_for 20 answers -x "http://127.0.0.1:$ps" "http://127.0.0.1:$PO/probe" || {
		echo "squid-range: squid did not start" >&2
		return 1
	}
	local o0 t0 t1 code rc img_ms curl_ms head_ms
	o0=$(origin_sent)
	cat >"$d/imgcache.conf.d" <<EOF
[global]
cache_dir = $d/cache
block_size = 64K
origin_timeout = $OT
[template big.img]
origin = http://127.0.0.1:$PO/big.img
proxy = http://127.0.0.1:$ps
EOF
	start_imgcache "$d/imgcache.conf.d" "$d/mnt" || return 1
	# A host's first read, at the end of the template, Squid cold.
	t0=$(date +%s%N)
	dd if="$d/mnt/big.img" of="$d/img.part" bs=64K skip=$((SZ / 65536 - 1)) \
		count=1 iflag=direct status=none 2>"$d/dd.err"
	rc=$?
	t1=$(date +%s%N)
	img_ms=$(ms "$t0" "$t1")
	tail -c 65536 "$T/www/big.img" >"$d/want"
	if [ $rc = 0 ] && ! cmp -s "$d/want" "$d/img.part"; then BAD=1; fi
	# Then another client: the same range, then the first 64 KiB.
	t0=$(date +%s%N)
	code=$(curl -s -o /dev/null -w '%{http_code}' -x "http://127.0.0.1:$ps" \
		-H "If-Match: $ETAG" -r "$((SZ - 65536))-$((SZ - 1))" \
		--max-time 600 "http://127.0.0.1:$PO/big.img")
	t1=$(date +%s%N)
	curl_ms=$(ms "$t0" "$t1")
	t0=$(date +%s%N)
	curl -s -o /dev/null -x "http://127.0.0.1:$ps" -H "If-Match: $ETAG" \
		-r 0-65535 --max-time 600 "http://127.0.0.1:$PO/big.img"
	t1=$(date +%s%N)
	head_ms=$(ms "$t0" "$t1")
	# And at once a third range, in the middle: a fetch of the whole
	# object that the first 64 KiB started may still be under way.
	local mid=$((SZ / 2 / 65536 * 65536)) mid_ms
	t0=$(date +%s%N)
	curl -s -o /dev/null -x "http://127.0.0.1:$ps" -H "If-Match: $ETAG" \
		-r "$mid-$((mid + 65535))" --max-time 600 \
		"http://127.0.0.1:$PO/big.img"
	t1=$(date +%s%N)
	mid_ms=$(ms "$t0" "$t1")
	# What the origin sent for this row: nginx logs a transfer when it
	# ends, so give a whole-object fetch Squid started SQR_WAIT seconds.
	wait_for "${SQR_WAIT:-60}" sh -c "[ \$(awk '\$2 == \"/big.img\" { s += \$4 } END { printf \"%d\", s }' '$T/origin/access.log') -ge $((o0 + SZ)) ]"
	local now
	now=$(origin_sent)
	stop_imgcache "$d/mnt"
	kill "$pid"
	wait "$pid" 2>/dev/null
	_unregister "$pid"
	printf '| %s | %s | %s ms%s | %s ms (HTTP %s) | %s ms | %s ms | %s MiB |\n' \
		"$1" "${RATE:-none}" "$img_ms" \
		"$([ $rc = 0 ] && echo "" || echo ", FAILED (EIO)")" \
		"$curl_ms" "$code" "$head_ms" "$mid_ms" \
		"$(awk -v b=$((now - o0)) 'BEGIN { printf "%.1f", b / 1048576 }')"
}

echo "squid-range: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $("$SQUID" -v | head -n 1)"
echo "template ${SIZE_MIB} MiB; imgcache origin_timeout $OT; Squid cold for each row (a new cache_dir), collapsed_forwarding ${SQR_COLLAPSED:-on}"
echo
echo "| range_offset_limit | origin rate limit | imgcache: first read, last 64 KiB, Squid cold | then curl: last 64 KiB | then curl: first 64 KiB | then curl: middle 64 KiB | origin MiB sent for the row |"
echo "|---|---|---:|---:|---:|---:|---:|"
for lim in ${SQR_LIMITS:-none 64}; do
	case $lim in [0-9]*) lim="$lim MB" ;; esac
	run_mode "$lim" || BAD=1
done
exit $BAD
