#!/bin/sh
# t-mount: imgcache mounts the way mount(8) and /etc/fstab do it (through
# mount.fuse3, type fuse.imgcache), serves the origin's bytes, and
# `umount` unmounts it with the daemon exiting; the systemd unit passes
# systemd-analyze verify.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
MOUNT_FUSE=$(command -v mount.fuse3 || echo /sbin/mount.fuse3)
[ -x "$MOUNT_FUSE" ] || skip "mount.fuse3 not installed"

make_file "$T/src/disk.img" 4
{ global_section; printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img"; } >"$T/conf"
MNT=$T/mnt
mkdir -p "$MNT"
# mount -t fuse.imgcache CONF MNT -o ro,allow_other runs exactly this
# (mount(8) finds imgcache on its own PATH, e.g. /usr/local/sbin after
# make install; the test puts the build directory first instead).
PATH="$top_builddir/fs:$PATH" bounded "$MOUNT_FUSE" "$T/conf" "$MNT" \
	-t imgcache -o ro,allow_other
_register - "$MNT"
check "mounted through mount.fuse3" is_mounted "$MNT"
check "mount type is fuse.imgcache" grep -q " $MNT fuse.imgcache ro," /proc/mounts
check "allow_other passed through" grep -q " $MNT fuse.imgcache .*allow_other" /proc/mounts
PID=$(pgrep -f "imgcache $T/conf $MNT" | head -n 1)
[ -n "$PID" ] || fail "daemon not found"
_register "$PID" -
bounded cat "$MNT/disk.img" >"$T/read"
assert_same "reads through the fstab-style mount equal origin" "$T/read" \
	"$T/src/disk.img"
bounded umount "$MNT"
check "umount unmounts" sh -c "! grep -q ' $MNT ' /proc/mounts"
if _wait_exit "$PID" 10; then ok "the daemon exited after umount"; else
	not_ok "the daemon exited after umount"
fi
_unregister -
_unregister "$PID"

# The unit names the installed daemon, $sbindir/imgcache (sbindir as
# configured: make check passes it); verify it with the built one there.
UNIT=$top_builddir/dist/imgcache.service
if [ -z "${sbindir:-}" ]; then
	note "sbindir unknown (run through make check): unit not verified"
elif command -v systemd-analyze >/dev/null 2>&1 && [ -f "$UNIT" ]; then
	grep -q "^ExecStart=$sbindir/imgcache " "$UNIT" ||
		not_ok "the unit starts $sbindir/imgcache: $(grep ^ExecStart= "$UNIT")"
	sed "s|^ExecStart=$sbindir/imgcache |ExecStart=$top_builddir/fs/imgcache |" \
		"$UNIT" >"$T/imgcache.service"
	if systemd-analyze verify --man=no "$T/imgcache.service" >"$T/v" 2>&1; then
		ok "systemd unit verifies"
	else
		not_ok "systemd unit verifies: $(cat "$T/v")"
	fi
else
	note "systemd-analyze or the generated unit missing: unit not verified"
fi
