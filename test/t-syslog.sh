#!/bin/sh
# t-syslog: daemonized (no -f), imgcache logs to syslog with the daemon
# facility, one line per event, levels kept, -d adds debug lines, and no
# secret from an origin URL appears.  Start-up lines go to the terminal as
# well (mount(8) shows them), later ones only to syslog.  The test runs the daemon in a private
# mount namespace whose /dev/log is a datagram socket of ours, so the
# host's syslog is neither needed nor touched.  Needs root and unshare(1).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
[ "$(id -u)" = 0 ] || skip "needs root (a private mount namespace)"
command -v unshare >/dev/null 2>&1 || skip "unshare(1) not installed"

make_file "$T/src/a.img" 2
{
	global_section
	printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img"
	# An unreachable HTTP origin whose URL carries credentials: its
	# warning must reach syslog masked.
	printf '\n[template h.img]\norigin = http://user:topsecret@127.0.0.1:9/h.img?token=topsecret\nconnect_timeout = 1s\n'
} >"$T/conf"

# The syslog socket: every datagram on its own line in $T/syslog.out.
python3 - "$T/log.sock" "$T/syslog.out" <<'EOF' &
import os, socket, sys
path, out = sys.argv[1:3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(out, "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).replace(b"\n", b" ") + b"\n")
EOF
_register $! -
wait_for 10 test -S "$T/log.sock" || fail "syslog socket not created"

# inner.sh runs in the namespace: /dev replaced by a tmpfs holding only
# what the daemon and fusermount3 need, and our socket as /dev/log.
cat >"$T/inner.sh" <<EOF
set -e
mkdir -p "$T/olddev"
mount --rbind /dev "$T/olddev"
mount -t tmpfs -o mode=0755 imgcache-dev /dev
for n in fuse null zero urandom random; do
	touch /dev/\$n
	mount --bind "$T/olddev/\$n" /dev/\$n
done
touch /dev/log
mount --bind "$T/log.sock" /dev/log
mkdir -p "$T/mnt"
"$IMGCACHE" @FLAGS@ "$T/conf" "$T/mnt"
cmp "$T/mnt/a.img" "$T/src/a.img" && echo same >"$T/inner.cmp"
pgrep -f "imgcache.* $T/conf " >"$T/inner.pid" || true
fusermount3 -u "$T/mnt"
n=0
while [ -s "$T/inner.pid" ] && kill -0 "\$(cat "$T/inner.pid")" 2>/dev/null; do
	n=\$((n + 1)); [ \$n -lt 100 ] || exit 3; sleep 0.1
done
EOF
run_inner() { # FLAGS
	rm -f "$T/inner.cmp"
	sed "s|@FLAGS@|$1|" "$T/inner.sh" >"$T/inner.run"
	bounded unshare -m --propagation private sh "$T/inner.run" \
		>"$T/inner.out" 2>&1 || not_ok "namespace run ($1): $(tail -3 "$T/inner.out")"
}

run_inner ""
check "daemonized: reads through the mount equal the origin" test -f "$T/inner.cmp"
check "start-up lines reach the terminal too (the mount)" grep -q 'imgcache: info: mounted' "$T/inner.out"
check "nothing on the terminal once daemonized (the unmount)" sh -c "! grep -q unmounted '$T/inner.out'"
# <PRI> = facility * 8 + severity: daemon (3) -> 24 + 6 info, 4 warning.
check "the mount is logged at daemon.info" grep -q '^<30>.*imgcache\[[0-9]*\]: .*mounted' "$T/syslog.out"
check "the unreachable origin is logged at daemon.warning" grep -q '^<28>.*imgcache\[[0-9]*\]: .*h\.img' "$T/syslog.out"
check "the unmount is logged" grep -q 'unmounted' "$T/syslog.out"
check "no debug lines without -d" sh -c "! grep -q '^<31>' '$T/syslog.out'"
check "no secret in syslog" sh -c "! grep -qi topsecret '$T/syslog.out'"
n1=$(wc -l <"$T/syslog.out")

run_inner "-d"
check "with -d, debug lines reach syslog (daemon.debug)" sh -c "tail -n +$((n1 + 1)) '$T/syslog.out' | grep -q '^<31>'"
check "no secret in syslog with -d either" sh -c "! grep -qi topsecret '$T/syslog.out'"
note "syslog lines: $(wc -l <"$T/syslog.out"); first: $(head -n 1 "$T/syslog.out")"
