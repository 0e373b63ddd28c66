#!/bin/sh
# t-dir-symlink: a [directory] origin serves only regular files inside the
# directory, to every user of an allow_other mount.
#  a. follow_symlinks = no (default): symlinks are neither listed nor read
#     -- to a root-only file (absolute and ../), inside the directory too;
#     a listed file replaced by a symlink to the root-only file afterwards:
#     reads of its uncached blocks fail with EIO, never give the file's
#     bytes; a SIGHUP re-listing applies the same rule and logs the
#     skipped links.
#  b. follow_symlinks = yes: links resolving inside the directory to
#     regular files are served (not absolute ones, not to a directory);
#     the outward ones are not; a served link retargeted outward fails
#     with EIO.  A [template] naming a symlink path keeps following it.
# Reads are made as uid/gid 65534 (setpriv --clear-groups) through
# -o allow_other.  Needs root (a root-only file, setpriv).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
[ "$(id -u)" = 0 ] || skip "needs root (a root-only file, setpriv)"
command -v setpriv >/dev/null 2>&1 || skip "setpriv not installed"
getent passwd 65534 >/dev/null 2>&1 || skip "no uid 65534 (nobody)"
chmod 0711 "$T" # nobody must reach the mount, not the origin
NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"

D=$T/d
make_file "$T/secret" 2
chmod 0600 "$T/secret"
make_file "$D/good.img" 1
make_file "$D/swap.img" 2
make_file "$D/sub/inner.img" 1
cp "$D/swap.img" "$T/swap.orig"
ln -s "$T/secret" "$D/out-link"
ln -s ../secret "$D/rel-out-link"
ln -s good.img "$D/in-link"
ln -s sub/inner.img "$D/in-sub"
ln -s "$D/good.img" "$D/abs-in-link"
ln -s sub "$D/dir-link"
MNT=$T/mnt

# conf CACHE FOLLOW [EXTRA]: one [directory d] section over $D.
conf() {
	printf '[global]\ncache_dir = %s\nblock_size = 64K\norigin_timeout = 3s\n' "$1"
	printf 'readahead = 0\n\n[directory d]\norigin = %s\n' "$D"
	[ -z "$2" ] || printf 'follow_symlinks = %s\n' "$2"
	printf '%s' "${3:-}"
}

# shellcheck disable=SC2012 # the mount's readdir is what is tested
listing() { LC_ALL=C ls "$MNT" | tr '\n' ' '; }

# nobody_read FILE OFF LEN OUT: O_DIRECT read as uid 65534; status in $rc.
nobody_read() {
	rc=0
	# Written by our shell: nobody cannot write in $T.
	# shellcheck disable=SC2086 # $NOBODY: a command and its options
	bounded $NOBODY dd if="$1" bs=64K skip="$2" count="$3" \
		iflag=direct,skip_bytes,count_bytes status=none >"$4" 2>"$4.err" ||
		rc=$?
}

# no_secret DESC OUT OFF: OUT does not hold the secret's bytes at OFF.
no_secret() {
	if [ -s "$2" ]; then
		extract "$T/secret" "$3" "$(stat -c %s "$2")" "$T/.sec"
		if cmp -s "$2" "$T/.sec"; then
			not_ok "$1: the root-only file's bytes were read"
			return
		fi
	fi
	ok "$1"
}

# read_eio DESC FILE OFF: an uncached block read as nobody fails with EIO
# and returns nothing of the secret.
read_eio() {
	nobody_read "$2" "$3" 65536 "$T/eio.out"
	if [ "$rc" != 0 ] && grep -q 'Input/output error' "$T/eio.out.err"; then
		ok "$1: EIO"
	else
		not_ok "$1: expected EIO, got status $rc: $(head -c 200 "$T/eio.out.err")"
	fi
	no_secret "$1: no byte of the root-only file" "$T/eio.out" "$3"
}

# not_served DESC NAME: NAME is not in the mount and cannot be read.
not_served() {
	nobody_read "$MNT/$2" 0 65536 "$T/ns.out"
	if [ "$rc" != 0 ] && grep -q 'No such file' "$T/ns.out.err"; then
		ok "$1: $2 cannot be opened"
	else
		not_ok "$1: $2: expected ENOENT, got status $rc: $(head -c 200 "$T/ns.out.err")"
	fi
	no_secret "$1: $2 gives no byte of the root-only file" "$T/ns.out" 0
}

# --- a. follow_symlinks = no
conf "$T/cache-a" "" >"$T/conf-a"
start_imgcache "$T/conf-a" "$MNT" -o allow_other
assert_eq "a: only the regular files are listed" "good.img swap.img " \
	"$(listing)"
for n in out-link rel-out-link in-link in-sub abs-in-link dir-link; do
	not_served "a" "$n"
done
check "a: the skipped links are named in the log" \
	grep -q "not serving 6 symbolic links.*rel-out-link" "$IMGCACHE_LOG"
nobody_read "$MNT/good.img" 0 1048576 "$T/good.read"
assert_same "a: nobody reads good.img" "$T/good.read" "$D/good.img"
# swap.img: block 0 cached, then replaced by a link to the secret.
nobody_read "$MNT/swap.img" 0 65536 "$T/swap0.read"
extract "$T/swap.orig" 0 65536 "$T/swap0.orig"
assert_same "a: block 0 of swap.img read and cached" "$T/swap0.read" \
	"$T/swap0.orig"
ln -s ../secret "$D/swap.tmp"
mv -T "$D/swap.tmp" "$D/swap.img"
read_eio "a: swap.img, now a link to the secret, at 1M" "$MNT/swap.img" 1048576
read_eio "a: swap.img at 64K" "$MNT/swap.img" 65536
nobody_read "$MNT/swap.img" 0 65536 "$T/swap0.again"
if [ "$rc" = 0 ]; then
	assert_same "a: its cached block 0 is still the listed file's" \
		"$T/swap0.again" "$T/swap0.orig"
else
	ok "a: its cached block 0 fails (status $rc)"
fi
no_secret "a: block 0 gives no byte of the root-only file" "$T/swap0.again" 0
check "a: the refusal is logged" grep -q "swap.img: a symbolic link" \
	"$IMGCACHE_LOG"
# A re-listing applies the same rule.
kill -HUP "$IMGCACHE_PID"
wait_for 10 grep -q reloaded "$IMGCACHE_LOG" || fail "reload did not finish"
assert_eq "a: after SIGHUP only good.img is listed" "good.img " "$(listing)"
not_served "a, after SIGHUP" swap.img
not_served "a, after SIGHUP" out-link
stop_imgcache "$MNT"

# --- b. follow_symlinks = yes
cp "$T/swap.orig" "$D/swap.tmp"
mv -T "$D/swap.tmp" "$D/swap.img"
conf "$T/cache-b" yes "$(printf '\n[template named.img]\norigin = %s\n' "$D/in-link")" \
	>"$T/conf-b"
start_imgcache "$T/conf-b" "$MNT" -o allow_other
assert_eq "b: regular files and links to them inside are listed" \
	"good.img in-link in-sub named.img swap.img " "$(listing)"
for n in out-link rel-out-link abs-in-link dir-link; do
	not_served "b" "$n"
done
nobody_read "$MNT/in-link" 0 1048576 "$T/inlink.read"
assert_same "b: in-link reads good.img" "$T/inlink.read" "$D/good.img"
nobody_read "$MNT/in-sub" 0 1048576 "$T/insub.read"
assert_same "b: in-sub reads sub/inner.img" "$T/insub.read" "$D/sub/inner.img"
nobody_read "$MNT/named.img" 0 1048576 "$T/named.read"
assert_same "b: a [template] naming a symlink path follows it" \
	"$T/named.read" "$D/good.img"
nobody_read "$MNT/swap.img" 0 2097152 "$T/swap.read"
assert_same "b: swap.img reads the origin" "$T/swap.read" "$T/swap.orig"
# in-link: block 0 cached (above: all of it); use a fresh link for the
# retarget so that an uncached block is left.
ln -s good.img "$D/late-link"
kill -HUP "$IMGCACHE_PID"
wait_for 10 sh -c "[ \$(grep -c reloaded '$IMGCACHE_LOG') -ge 1 ]" ||
	fail "reload did not finish"
wait_for 10 test -e "$MNT/late-link" || true
nobody_read "$MNT/late-link" 0 65536 "$T/late0.read"
extract "$D/good.img" 0 65536 "$T/good0"
assert_same "b: late-link, added at a reload, reads good.img" \
	"$T/late0.read" "$T/good0"
ln -s ../secret "$D/late.tmp"
mv -T "$D/late.tmp" "$D/late-link"
read_eio "b: late-link retargeted to ../secret, at 512K" "$MNT/late-link" 524288
stop_imgcache "$MNT"
