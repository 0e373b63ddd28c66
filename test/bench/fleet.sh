#!/bin/bash
# shellcheck disable=SC2317 # functions are called indirectly (trap, wait_for)
# fleet.sh BUILD_DIR — `make bench-fleet`: K imgcache "hosts" (each its own
# daemon, cache_dir and mount point) boot the same template through one
# site cache (nginx proxy_cache + slice: dist/nginx-site-cache.conf) in
# front of one origin (nginx, counting the bytes it sends).  Figures, not
# tests: nothing here fails on a slow figure; it exits 1 only when a
# replayed byte differs from the origin's or a replay fails.
#
# The profile: the recorded boot trace bench-storm uses
# (test/bench/boot.trace[.xz]) on a pseudo-random image of the recorded
# template's size, else a synthetic one (~35 MB in ~220 ranges in a
# 640 MiB file).  Each host runs test/bench/replay -j J (J VMs booting at
# once, O_DIRECT, every byte compared with the origin's): host 1 first,
# with the tier cold, then hosts 2..K one after the other (FLEET_PARALLEL=1:
# all at once) with the tier warm.  Printed: origin bytes against the union
# of what the hosts asked the tier for (and against one boot's
# block-rounded working set, and K times it: no tier), the tier's hit
# ratio (requests, from $upstream_cache_status in its log; bytes: 1 -
# origin bytes / bytes served), and the per-host median replay time of
# host 1 vs the rest.
#
# Environment:
#   FLEET_K=8            hosts
#   FLEET_J=8            replayers per host
#   FLEET_SLICE=64k      the site cache's slice size (the shipped config's)
#   FLEET_PARALLEL=      1: hosts 2..K replay at the same time
#   FLEET_TRACE, FLEET_SIZE  another trace, and the image size it needs
#   FLEET_DIR=/var/tmp   parent of the temporary directory
#   FLEET_TIMEOUT=900    limit for any one replay
#   FLEET_KEEP=1         keep the temporary directory
set -u -o pipefail
export LC_ALL=C

B=$(cd "${1:-.}" && pwd)
S=$(cd "$(dirname "$0")/../.." && pwd)
top_builddir=$B top_srcdir=$S
export top_builddir top_srcdir
REPLAY=$B/test/bench/replay
BS=65536
log() { echo "fleet: $*" >&2; }
for x in "$B/fs/imgcache" "$REPLAY"; do
	[ -x "$x" ] || {
		log "$x is not built (run make bench-fleet)"
		exit 1
	}
done
TMPDIR=${FLEET_DIR:-/var/tmp}
KEEP_TMP=${FLEET_KEEP:-}
export TMPDIR
# shellcheck source=test/lib.sh
. "$S/test/lib.sh"
set +e
require_local_http
[ -x "$NGINX" ] || {
	log "needs nginx (apt-get install nginx-light)"
	exit 1
}
command -v curl >/dev/null 2>&1 || {
	log "needs curl"
	exit 1
}
T_TIMEOUT=${FLEET_TIMEOUT:-900}
K=${FLEET_K:-8}
J=${FLEET_J:-8}
SLICE=${FLEET_SLICE:-64k}
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# ------------------------------------------------------------ profile

mkdir -p "$T/www"
TRACE=$T/trace
shipped=$S/test/bench/boot.trace
if [ -n "${FLEET_TRACE:-}" ]; then
	case $FLEET_TRACE in *.xz) xz -dc "$FLEET_TRACE" >"$TRACE" ;; *) cp "$FLEET_TRACE" "$TRACE" ;; esac
	PROFILE="$FLEET_TRACE"
elif [ -e "$shipped" ] || [ -e "$shipped.xz" ]; then
	if [ -e "$shipped.xz" ]; then xz -dc "$shipped.xz" >"$TRACE"; else cp "$shipped" "$TRACE"; fi
	PROFILE="shipped boot trace (test/bench/boot.trace)"
else
	awk -v size=$((640 << 20)) -v n=220 -v want=35000000 -v seed=16 'BEGIN {
		srand(seed); print "# imgcache-trace v1"
		print "# template synthetic size " size " block 65536"
		t = 0
		for (i = 0; i < n; i++) {
			u = rand()
			if (u < 0.55) len = 4096 * (1 + int(rand() * 4))
			else if (u < 0.85) len = 4096 * (4 + int(rand() * 28))
			else len = 4096 * (32 + int(rand() * 480))
			len = int(len * want / (n * 160000)); len = len - len % 4096
			if (len < 4096) len = 4096
			off = int(rand() * (size - len) / 4096) * 4096
			for (d = 0; d < len; d += 131072) {
				r = len - d; if (r > 131072) r = 131072
				print t, off + d, r; t += 50 + int(rand() * 400)
			}
		}
	}' >"$TRACE"
	PROFILE="synthetic (220 ranges, ~35 MB; no shipped trace)"
fi
# The image: the recorded template's size, pseudo-random bytes (what
# matters here is which ranges are read, and that every byte is checked).
ISZ=${FLEET_SIZE:-$(sed -n 's/^# template .* size \([0-9]*\).*/\1/p' "$TRACE" | head -n 1)}
[ -n "$ISZ" ] || ISZ=$(awk '!/^#/ && NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$TRACE")
IMG=$T/www/img
log "writing a $((ISZ >> 20)) MiB image"
head -c "$ISZ" /dev/urandom >"$IMG" || exit 1
read -r TR_READS TR_BYTES WS <<<"$(awk -v bs=$BS -v size="$ISZ" '!/^#/ && NF == 3 {
	n++; b += $3; for (k = int($2 / bs); k <= int(($2 + $3 - 1) / bs); k++) s[k] = 1 }
	END { for (k in s) { e = (k + 1) * bs; w += (e > size ? size - k * bs : bs) }
		print n + 0, b + 0, w + 0 }' "$TRACE")"

# ------------------------------------------------------------ servers

# nginx_main NAME BODY: a foreground nginx.conf around an http BODY.
nginx_main() {
	mkdir -p "$T/$1/tmp"
	cat >"$T/$1/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $T/$1/error.log;
pid $T/$1/nginx.pid;
events { worker_connections 4096; }
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
	"$NGINX" -p "$T/$1/" -c "$T/$1/nginx.conf" >"$T/$1/stderr" 2>&1 &
	_register $! -
}
answers() { curl -sf -r 0-0 -o /dev/null "$1"; }
echo probe >"$T/www/probe"
PO=$(free_port)
nginx_main origin "log_format o '\$request_method \$uri \$status \$body_bytes_sent';
    access_log $T/origin/access.log o;
    server { listen 127.0.0.1:$PO; root $T/www; }"
wait_for 10 answers "http://127.0.0.1:$PO/probe" || {
	log "the origin nginx did not start"
	exit 1
}
PC=$(free_port)
mkdir -p "$T/cache/store"
sed -e "s|/var/cache/nginx/imgcache|$T/cache/store|" \
	-e "s|max_size=100g|max_size=8g|" \
	-e "s|server images.example.org:80;|server 127.0.0.1:$PO;|" \
	-e "s|Host images.example.org;|Host 127.0.0.1:$PO;|" \
	-e "s|listen 8080;|listen 127.0.0.1:$PC;|" \
	-e "s|slice 64k;|slice $SLICE;|" \
	-e "s|/var/log/nginx/imgcache-cache.log|$T/cache/access.log|" \
	"$S/dist/nginx-site-cache.conf" >"$T/site.conf"
nginx_main cache "include $T/site.conf;"
wait_for 10 answers "http://127.0.0.1:$PC/probe" || {
	log "the site cache did not start"
	exit 1
}

# ------------------------------------------------------------ hosts

for h in $(seq 1 "$K"); do
	mkdir -p "$T/h$h"
	cat >"$T/h$h/imgcache.conf" <<EOF
[global]
cache_dir = $T/h$h/cache
block_size = 64K
[template img]
origin = http://127.0.0.1:$PC/img
EOF
	start_imgcache "$T/h$h/imgcache.conf" "$T/h$h/mnt" || exit 1
done
origin_bytes() { awk '$1 == "GET" && $2 == "/img" { s += $4 } END { printf "%d\n", s }' "$T/origin/access.log"; }
BAD=0
# replay_host H: host H's J replayers; its median (us) in $T/h$H/median.
replay_host() {
	bounded "$REPLAY" -j "$J" -c "$IMG" "$T/h$1/mnt/img" "$TRACE" \
		>"$T/h$1/replay" 2>"$T/h$1/replay.err" || {
		log "host $1: replay failed: $(head -n 3 "$T/h$1/replay.err")"
		return 1
	}
	sed -n 's/^median_us \([0-9]*\).*/\1/p' "$T/h$1/replay" >"$T/h$1/median"
}
log "host 1: $J replayers, tier cold"
replay_host 1 || BAD=1
O1=$(origin_bytes)
if [ -n "${FLEET_PARALLEL:-}" ]; then
	log "hosts 2..$K at once, tier warm"
	pids=
	for h in $(seq 2 "$K"); do
		replay_host "$h" &
		pids="$pids $!"
	done
	for p in $pids; do wait "$p" || BAD=1; done
else
	for h in $(seq 2 "$K"); do
		log "host $h: $J replayers, tier warm"
		replay_host "$h" || BAD=1
	done
fi
O=$(origin_bytes)
# What the hosts asked the tier for (readahead included), as a union.
U=$(grep '"GET /img ' "$T/cache/access.log" | grep -o 'bytes=[0-9]*-[0-9]*' |
	awk -F'[=-]' '{ print $2, $3 + 1 }' | sort -n -k1,1 |
	awk '$1 > end { u += $2 - $1; end = $2; next }
	     $2 > end { u += $2 - end; end = $2 }
	     END { printf "%d\n", u }')
SERVED=$(awk '/"GET \/img / { s += $(NF - 3) } END { printf "%d\n", s }' "$T/cache/access.log")
read -r REQ HIT <<<"$(awk '/"GET \/img / { n++; if ($(NF - 1) == "HIT") h++ } END { print n + 0, h + 0 }' "$T/cache/access.log")"
M1=$(cat "$T/h1/median" 2>/dev/null)
REST=$(for h in $(seq 2 "$K"); do cat "$T/h$h/median" 2>/dev/null; done | sort -n)
MR=$(echo "$REST" | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }')
MMAX=$(echo "$REST" | tail -n 1)

echo "imgcache bench-fleet: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB RAM, kernel $(uname -r); load $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo "profile: $PROFILE: $TR_READS reads, $(mib "$TR_BYTES") MiB, working set $(mib "$WS") MiB at 64K blocks; image $(mib "$ISZ") MiB"
echo "fleet: $K hosts x $J replayers (O_DIRECT, bytes compared), site cache nginx slice $SLICE, hosts 2..$K ${FLEET_PARALLEL:+at once}${FLEET_PARALLEL:-one after the other}"
echo "bytes exact: $([ "$BAD" = 0 ] && echo yes || echo NO)"
echo
printf '| %s | %s | %s |\n' figure value target
printf '|---|---:|---|\n'
printf '| origin bytes, %d hosts | %s MiB | - |\n' "$K" "$(mib "$O")"
printf '| union the hosts asked the tier for | %s MiB | - |\n' "$(mib "$U")"
printf '| origin bytes / that union | %s | <=1.05 |\n' "$(div "$O" "$U")"
printf '| without the tier: the hosts'"'"' fetches summed | %s MiB | - |\n' "$(mib "$SERVED")"
printf '| origin bytes / one boot'"'"'s block-rounded working set | %s | - |\n' "$(div "$O" "$WS")"
printf '| origin bytes after host 1 / total | %s | - |\n' "$(div "$O1" "$O")"
printf '| site cache hit ratio, requests (HIT / GETs) | %s (%d of %d) | - |\n' "$(div "$HIT" "$REQ")" "$HIT" "$REQ"
printf '| site cache hit ratio, bytes (1 - origin / served) | %s | - |\n' "$(awk -v o="$O" -v s="$SERVED" 'BEGIN { if (s > 0) printf "%.2f", 1 - o / s; else print "-" }')"
printf '| host 1 median replay time (tier cold) | %s ms | - |\n' "$(awk -v v="${M1:-0}" 'BEGIN { printf "%.0f", v / 1000 }')"
printf '| hosts 2..%d median of medians (tier warm) | %s ms | - |\n' "$K" "$(awk -v v="${MR:-0}" 'BEGIN { printf "%.0f", v / 1000 }')"
printf '| hosts 2..%d / host 1 | %s | <=1.1 |\n' "$K" "$(div "${MR:-0}" "${M1:-0}")"
printf '| slowest of hosts 2..%d / host 1 | %s | - |\n' "$K" "$(div "${MMAX:-0}" "${M1:-0}")"
echo
echo "per-host medians (ms): $(for h in $(seq 1 "$K"); do awk -v v="$(cat "$T/h$h/median" 2>/dev/null || echo 0)" 'BEGIN { printf "%.0f ", v / 1000 }'; done)"
exit "$BAD"
