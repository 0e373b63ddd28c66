#!/bin/sh
# t-readahead-ratio: readahead earns its bytes (issue 14, point 3).  An
# HTTP origin (nginx) serves two templates:
#  - boot.qcow2, a synthetic qcow2 (test/bootsim.py: qemu-img + qemu-io
#    writes of 240 guest regions in shuffled order, so the host layout is
#    not the guest order) and an ordered boot trace of it (format A): the
#    qcow2 metadata first, then a fifth of the regions in guest order, in
#    reads of 4K-256K, most read whole, some in part.  Replayed cold through
#    the mount with O_DIRECT (as QEMU's cache=none), every range equal to
#    the origin's bytes, the origin's GET bytes (nginx's access log) are
#    at most 1.3x the trace's working set rounded to 64K blocks;
#  - seq.img (raw, 48 MiB), read sequentially with 1 MiB O_DIRECT reads:
#    readahead still runs (user.imgcache.readahead_fetched > 0) and earns
#    its bytes (readahead_used >= 0.9 x readahead_fetched), the bytes the
#    origin's.
# SKIP (77) without FUSE, nginx, python3, getfattr, qemu-img or qemu-io.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_nginx
require_local_http
command -v curl >/dev/null 2>&1 || skip "curl not installed"
command -v getfattr >/dev/null 2>&1 || skip "getfattr not installed"
command -v qemu-img >/dev/null 2>&1 || skip "qemu-img not installed"
command -v qemu-io >/dev/null 2>&1 || skip "qemu-io not installed"

BOOTSIM=$top_srcdir/test/bootsim.py
mkdir -p "$T/www"
python3 "$BOOTSIM" make "$T/www/boot.qcow2" "$T/trace" ||
	fail "could not make the synthetic qcow2 boot"
make_file "$T/www/seq.img" 48

PORT=$(free_port)
nginx_config "$PORT" "log_format t '\$request|\$status|\$body_bytes_sent';
    access_log $T/nginx/access.log t;"
"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
_register $! -
answers() { curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/seq.img"; }
wait_for 10 answers || {
	show_log "$T/nginx/error.log"
	fail "nginx did not start"
}
# served NAME: GET bytes nginx sent for /NAME.
served() {
	awk -F'|' -v p="GET /$1 " 'index($1, p) == 1 { s += $3 }
		END { printf "%d\n", s }' "$T/nginx/access.log"
}
xattr() {
	getfattr --only-values -n "user.imgcache.$2" "$1" 2>/dev/null
}

{
	global_section
	printf 'revalidate = 1h\n'
	for n in boot.qcow2 seq.img; do
		printf '\n[template %s]\norigin = http://127.0.0.1:%s/%s\n' \
			"$n" "$PORT" "$n"
	done
} >"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"

# --- the boot replay, cold
if bounded python3 "$BOOTSIM" replay "$MNT/boot.qcow2" "$T/trace" \
	"$T/www/boot.qcow2" >"$T/replay" 2>&1; then
	ok "the boot replay read the origin's bytes ($(cat "$T/replay"))"
else
	not_ok "the boot replay: $(cat "$T/replay")"
fi
ws=$(awk '{ print $6 }' "$T/replay")
got=$(served boot.qcow2)
note "boot replay: origin bytes $got, working set $ws (64K blocks):" \
	"$(awk -v a="$got" -v b="${ws:-1}" 'BEGIN { printf "%.2fx", a / b }')," \
	"readahead fetched $(xattr "$MNT/boot.qcow2" readahead_fetched)" \
	"used $(xattr "$MNT/boot.qcow2" readahead_used)"
assert_le "origin bytes of the boot replay <= 1.3 x its working set" \
	"$got" $((${ws:-0} * 13 / 10))

# --- a sequential read still gets readahead, and reads it
bounded dd if="$MNT/seq.img" of="$T/seq" bs=1M iflag=direct status=none ||
	not_ok "the sequential read failed"
assert_same "the sequential read equals the origin" "$T/seq" "$T/www/seq.img"
f=$(xattr "$MNT/seq.img" readahead_fetched)
u=$(xattr "$MNT/seq.img" readahead_used)
note "sequential read: readahead fetched ${f:-?} used ${u:-?}," \
	"origin bytes $(served seq.img)"
check "a sequential read gets readahead (fetched ${f:-none} > 0)" \
	[ "${f:-0}" -gt 0 ]
check "its readahead is read (used ${u:-none} >= 0.9 x fetched ${f:-none})" \
	[ "$((${u:-0} * 10))" -ge "$((${f:-1} * 9))" ]

# --- listed: getfattr -d dumps what listxattr names, the figures included
# (a fixed 512-byte list buffer was outgrown by the 18 names: the list ran
# past it and ended in a cut name)
getfattr --absolute-names -d "$MNT/seq.img" >"$T/dump" 2>"$T/dump.err" ||
	not_ok "getfattr -d seq.img: $(cat "$T/dump.err")"
for k in readahead_fetched readahead_used readahead_skipped \
	pinned_present_bytes.low; do
	check "getfattr -d lists user.imgcache.$k" \
		grep -q "^user\.imgcache\.$k=\"[0-9]*\"\$" "$T/dump"
done
check "listxattr names nothing but user.imgcache.* attributes" \
	sh -c "! getfattr --absolute-names -d -m - '$MNT/seq.img' 2>&1 | grep -v '^#' |
		grep -v '^\$' | grep -v '^user\.imgcache\.'"
stop_imgcache "$MNT"
