#!/bin/sh
# t-reload-hung: a reload never waits for the origin.  Config pins
# (pin = qcow2-metadata) are resolved by reading the template through the
# cache; while that read hangs on an origin that does not answer, a SIGHUP
# must still apply the new config at once (a template added appears and
# serves), and so must the next one.  Config pins are applied by the
# housekeeping thread after the config lock is released.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

make_file "$T/a.data" 2
make_file "$T/src/b.img" 2
# Every ranged GET (the qcow2 header read of pin resolution and its
# retries) is read and never answered, until the file is removed.
echo 'hang!' >"$T/fault"
start_faultsrv S "$T/a.data" --fault-file "$T/fault"
URL=http://127.0.0.1:$PORT

conf() {
	printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
	# Far longer than any bound below: a reload that waits for the hung
	# read cannot pass.
	printf 'origin_timeout = 60s\n'
	printf '\n[template a.img]\norigin = %s/sw/a.img\npin = qcow2-metadata\n' \
		"$URL"
}
conf >"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
# The daemon gives up on a stalled GET after 5 s below 1 KiB/s and asks
# again, to hang again, until origin_timeout.
if wait_for 30 test -s "$T/fault.taken"; then
	ok "the pin resolution's reads reach the origin, which does not answer"
else
	fail "no ranged GET reached the origin"
fi

{ conf; printf '\n[template b.img]\norigin = %s\n' "$T/src/b.img"; } >"$T/conf"
reload_imgcache
ok "a reload finished while the config pins' read hangs"
check "b.img appears" test -e "$MNT/b.img"
bounded cat "$MNT/b.img" >"$T/b.read"
assert_same "b.img reads the origin's bytes" "$T/b.read" "$T/src/b.img"

{ conf; printf '\n[template b.img]\norigin = %s\nquota = 1M\n' \
	"$T/src/b.img"; } >"$T/conf"
reload_imgcache
ok "so did the next one"

# The hung read ends when the origin goes (its connection closes).
rm -f "$T/fault"
stop_faultsrv S
stop_imgcache "$MNT"
ok "unmounted cleanly"
