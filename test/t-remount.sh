#!/bin/sh
# t-remount: a file origin's share mounted again under another device
# number (an NFS or FUSE share gets whatever anonymous device is free at
# each mount; here an ext4 image on a second loop device) is the same
# content: the template keeps its generation and its cache, and running
# handles keep reading (issue 12, with case 5: a directory that is away at
# boot comes back).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
command -v losetup >/dev/null 2>&1 || skip "losetup not installed"
command -v mkfs.ext4 >/dev/null 2>&1 || skip "mkfs.ext4 not installed"

SHARE=$T/share
IMG=$T/share.img
LOOPS=
# The share is unmounted (lazily) by lib.sh's trap after the FUSE mounts,
# like a tmpfs of ours; our loop devices are detached first (a mounted
# one then goes when it is unmounted: autoclear).
trap '_r=$?; for _l in $LOOPS; do losetup -d "$_l" 2>/dev/null; done
(exit $_r); _cleanup' EXIT

truncate -s 64M "$IMG"
mkfs.ext4 -q -F "$IMG" >/dev/null 2>&1 || skip "mkfs.ext4 failed"
# attach VAR: the image on a free loop device, its name in VAR
attach() {
	_l=$(losetup -f --show "$IMG" 2>/dev/null) || skip "no free loop device"
	LOOPS="$LOOPS $_l"
	eval "$1=\$_l"
}
attach L1
mkdir -p "$SHARE"
mount "$L1" "$SHARE" 2>/dev/null || skip "cannot mount a loop device here"
echo "$SHARE" >>"$T/.tmpfs"
make_file "$SHARE/t.img" 8
cp "$SHARE/t.img" "$T/want"
dev1=$(stat -c %d "$SHARE/t.img")
ino1=$(stat -c %i "$SHARE/t.img")

global_section >"$T/conf"
printf '\n[directory share]\norigin = %s\n' "$SHARE" >>"$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
bounded dd if="$MNT/t.img" of="$T/part" bs=1M count=4 status=none
gen1=$(getfattr --absolute-names --only-values \
	-n user.imgcache.generation "$MNT/t.img")
exec 3<"$MNT/t.img" # a running VM's handle

# the share goes and comes back on another device (L1 stays attached, so
# L2 is another one)
umount "$SHARE"
attach L2
mount "$L2" "$SHARE"
dev2=$(stat -c %d "$SHARE/t.img")
note "share device $dev1 -> $dev2, inode $ino1 -> $(stat -c %i "$SHARE/t.img")"
[ "$dev1" != "$dev2" ] || skip "the remount got the same device number"

bounded cat "$MNT/t.img" >"$T/out"
assert_same "after the remount: the template reads the same bytes" \
	"$T/out" "$T/want"
gen2=$(getfattr --absolute-names --only-values \
	-n user.imgcache.generation "$MNT/t.img")
assert_eq "... in the same generation (the cache is kept)" "$gen1" "$gen2"
rc=0
bounded dd bs=1M skip=4 status=none <&3 >"$T/rest" 2>"$T/dd.err" || rc=$?
exec 3<&-
assert_eq "the handle opened before the remount reads on" 0 "$rc"
extract "$T/want" $((4 * 1048576)) $((4 * 1048576)) "$T/want.rest"
assert_same "... the origin's bytes" "$T/rest" "$T/want.rest"
check "no new generation was logged" \
	sh -c "! grep -q 'new generation' '$IMGCACHE_LOG'"
stop_imgcache "$MNT"

# and across a restart of the daemon, as at host boot
start_imgcache "$T/conf" "$MNT"
gen3=$(getfattr --absolute-names --only-values \
	-n user.imgcache.generation "$MNT/t.img")
assert_eq "after a restart: still the same generation" "$gen1" "$gen3"
check "... and no new generation logged" \
	sh -c "! grep -q 'new generation' '$IMGCACHE_LOG'"
stop_imgcache "$MNT"
