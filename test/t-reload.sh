#!/bin/sh
# t-reload: SIGHUP re-reads the config without unmounting: a template added
# appears, a removed one disappears from the directory while an open handle
# keeps reading it, a new quota is enforced, and an invalid config is
# rejected with FILE:LINE in the log while the running one is kept.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

make_file "$T/src/a.img" 4
make_file "$T/src/b.img" 8
conf_a() {
	global_section
	printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img"
}
conf_a >"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
check "a.img listed at start" test -e "$MNT/a.img"


# --- 1. add b.img with a 1M quota
{ conf_a; printf '\n[template b.img]\norigin = %s\nquota = 1M\n' "$T/src/b.img"; } >"$T/conf"
reload_imgcache
wait_for 10 test -e "$MNT/b.img" || true
check "b.img appears after SIGHUP" test -e "$MNT/b.img"
bounded cat "$MNT/b.img" >"$T/b.read"
assert_same "b.img reads the origin's bytes" "$T/b.read" "$T/src/b.img"
DATA=$(ls "$CACHE"/data/b.img.*)
assert_le "b.img's quota is enforced" "$(($(stat -c %b "$DATA") * 512))" \
	$((1048576 + 65536))
check "still mounted" is_mounted "$MNT"

# --- 2. remove a.img while a handle is open on it
exec 7<"$MNT/a.img"
{ global_section; printf '\n[template b.img]\norigin = %s\nquota = 1M\n' "$T/src/b.img"; } >"$T/conf"
reload_imgcache
wait_for 10 sh -c "! test -e '$MNT/a.img'" || true
if test -e "$MNT/a.img"; then not_ok "a.img gone after SIGHUP"; else
	ok "a.img gone after SIGHUP"
fi
if ls "$MNT" | grep -q a.img; then not_ok "a.img not listed"; else
	ok "a.img not listed"
fi
bounded dd bs=1M status=none <&7 >"$T/a.read"
exec 7<&-
assert_same "the open handle of a.img still reads it" "$T/a.read" \
	"$T/src/a.img"

# --- 3. an invalid config is rejected, the running one kept
cp "$T/conf" "$T/conf.good"
printf '\n[template c.img]\norigin = %s\nbogus = 1\n' "$T/src/a.img" >>"$T/conf"
reload_imgcache
check "the log names FILE:LINE of the bad key" \
	grep -q "$T/conf:.*unknown key 'bogus'" "$IMGCACHE_LOG"
check "b.img still served" cmp -s "$MNT/b.img" "$T/src/b.img"
check "still mounted after a bad config" is_mounted "$MNT"
stop_imgcache "$MNT"
