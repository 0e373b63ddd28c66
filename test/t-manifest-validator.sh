#!/bin/sh
# t-manifest-validator: the origin's validator of a stored manifest (its
# ETag) is kept with it, so the requests a restart makes for it are
# conditional: the stored manifest that is not bound, asked for again at
# start, and the refetch a failing block makes, are each answered 304
# (nothing sent again) by an origin whose manifest did not change.  HTTP
# origin: nginx, counted in its access log (status per request).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
require_nginx
command -v curl >/dev/null || skip "curl not installed"

MANIFEST=$top_builddir/tools/imgcache-manifest
[ -x "$MANIFEST" ] || fail "$MANIFEST is not built (run make)"
BS=65536
CACHE=$T/cache
MNT=$T/mnt

# n.img with the manifest of its previous version (not bound: it checks
# only): v1 hashed, then block 5 rewritten in place, a later mtime.
mkdir -p "$T/www"
make_file_bytes "$T/www/n.img" $((16 * BS))
touch -d "2024-01-01 00:00:00 UTC" "$T/www/n.img"
"$MANIFEST" "$T/www/n.img" >/dev/null || fail "imgcache-manifest failed"
write_at "$T/www/n.img" $((5 * BS)) $BS
touch -d "2024-02-01 00:00:00 UTC" "$T/www/n.img"

PN=$(free_port)
nginx_config "$PN" "log_format r '\$uri \$status';
    access_log $T/nginx/access.log r;"
"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
_register $! -
wait_for 10 curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PN/n.img" || {
	show_log "$T/nginx/error.log"
	fail "nginx did not start"
}
# mf_gets STATUS FROM: manifest requests answered STATUS, from log line FROM.
mf_gets() {
	awk -v s="$1" -v from="$2" 'NR >= from && $1 == "/n.img.imgcache-manifest" &&
		$2 == s { n++ } END { printf "%d\n", n }' "$T/nginx/access.log"
}
global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template n.img]
origin = http://127.0.0.1:$PN/n.img
EOF

# read_block B: block B of n.img reads (O_DIRECT).
read_block() {
	bounded dd if="$MNT/n.img" of=/dev/null bs=64K skip="$1" count=1 \
		iflag=direct status=none 2>/dev/null
}

start_imgcache "$T/conf" "$MNT"
read_block 0 || not_ok "block 0 failed"
read_block 5 && not_ok "block 5 read with the other version's manifest"
assert_eq "the first start fetched the manifest once (200)" 1 "$(mf_gets 200 1)"
assert_le "... and its refetch for block 5 was conditional (304)" 1 \
	"$(mf_gets 304 1)"
stop_imgcache "$MNT"
set -- "$CACHE"/data/n.img.*.imgcache-manifest
[ -f "$1" ] || fail "no stored manifest of n.img in $CACHE/data"
if getfattr --only-values -n user.imgcache.validator "$1" 2>/dev/null |
	grep -q '^etag:"'; then
	ok "the stored manifest keeps the origin's ETag"
else
	not_ok "the stored manifest has no user.imgcache.validator"
fi

from=$(($(wc -l <"$T/nginx/access.log") + 1))
start_imgcache "$T/conf" "$MNT"
read_block 0 || not_ok "block 0 failed after the restart"
read_block 5 && not_ok "block 5 read with the other version's manifest"
if grep -q "template n.img: a block of generation .* fetching its manifest again" \
	"$IMGCACHE_LOG"; then
	ok "after the restart, the failing block fetched the manifest again"
else
	show_log "$IMGCACHE_LOG"
	not_ok "no refetch after the restart"
fi
assert_eq "after a restart no manifest GET was answered 200" 0 \
	"$(mf_gets 200 "$from")"
assert_eq "... both (at start, for the unbound copy; for block 5) were 304" \
	2 "$(mf_gets 304 "$from")"
stop_imgcache "$MNT"
