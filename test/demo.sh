#!/bin/sh
# demo.sh BUILD_DIR — `make demo`: mount a 32 MiB template, read it cold and
# warm, and show what came from the origin and what from the cache.
#
# The origin directory is served through test/originfs, which counts the
# bytes imgcache fetches (as an NFS server would see them).
set -eu

B=${1:-.}
B=$(cd "$B" && pwd)
IMGCACHE=$B/fs/imgcache
ORIGINFS=$B/test/originfs
for x in "$IMGCACHE" "$ORIGINFS"; do
	[ -x "$x" ] || {
		echo "demo: $x is not built (run make)" >&2
		exit 1
	}
done
if ! [ -c /dev/fuse ] || ! command -v fusermount3 >/dev/null 2>&1; then
	echo "demo: needs /dev/fuse and fusermount3 (package fuse3)" >&2
	exit 1
fi

D=$(mktemp -d "${TMPDIR:-/tmp}/imgcache-demo.XXXXXX")
D=$(cd "$D" && pwd -P)
PIDS=""
cleanup() {
	rc=$?
	set +e
	for m in "$D/mnt" "$D/origin"; do
		if awk -v m="$m" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; then
			fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m"
		fi
	done
	for p in $PIDS; do
		n=100
		while alive "$p" && [ "$n" -gt 0 ]; do
			n=$((n - 1))
			sleep 0.05
		done
		kill "$p" 2>/dev/null
	done
	if awk -v t="$D/" 'index($5, t) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		echo "demo: mounts left under $D" >&2
	else
		rm -rf --one-file-system "$D"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
	echo "demo: $*" >&2
	for l in "$D"/*.log; do
		[ -s "$l" ] && sed "s|^|  $(basename "$l"): |" "$l" | tail -n 5 >&2
	done
	exit 1
}

# wait_mount PID DIR: bounded wait (10 s) for DIR to be mounted.
wait_mount() {
	n=200
	until awk -v m="$2" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo &&
		timeout 10 mountpoint -q "$2"; do
		kill -0 "$1" 2>/dev/null || die "the daemon for $2 exited"
		n=$((n - 1))
		[ "$n" -gt 0 ] || die "$2 not mounted after 10 s"
		sleep 0.05
	done
}

ms() { echo $(($(date +%s%N) / 1000000)); }
origin_bytes() { awk '{ s += $3 } END { printf "%d\n", s }' "$D/origin-access.log"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN { if (t < 1) t = 1; printf "%.2f s, %.0f MiB/s", t / 1000, b / 1048576 / (t / 1000) }'; }

alive() { [ -d "/proc/$1" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }

start_imgcache() {
	"$IMGCACHE" -f "$D/imgcache.conf" "$D/mnt" >>"$D/imgcache.log" 2>&1 &
	IC_PID=$!
	PIDS="$PIDS $IC_PID"
	wait_mount "$IC_PID" "$D/mnt"
}
# stop_imgcache: unmount and wait (10 s at most) for the daemon to exit.
stop_imgcache() {
	fusermount3 -u "$D/mnt" || die "cannot unmount $D/mnt"
	n=200
	while alive "$IC_PID"; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || die "imgcache still running 10 s after unmount"
		sleep 0.05
	done
	wait "$IC_PID" || die "imgcache exited with status $?"
}

mkdir -p "$D/templates" "$D/origin" "$D/mnt"
head -c $((32 * 1048576)) /dev/urandom >"$D/templates/demo.img"
SIZE=$(stat -c %s "$D/templates/demo.img")
: >"$D/origin-access.log"
"$ORIGINFS" "$D/templates" "$D/origin-access.log" "$D/origin" -f \
	>"$D/originfs.log" 2>&1 &
PIDS="$PIDS $!"
wait_mount "$!" "$D/origin"

cat >"$D/imgcache.conf" <<EOF
[global]
cache_dir = $D/cache
block_size = 64K

[template demo.img]
origin = $D/origin/demo.img
EOF

echo "imgcache demo in $D"
echo "  template demo.img: $(mib "$SIZE") of random data, block size 64K"
start_imgcache
echo "  mounted on $D/mnt: $(stat -c %A "$D/mnt/demo.img") demo.img, $(mib "$(stat -c %s "$D/mnt/demo.img")")"

t0=$(ms)
sum=$(timeout 120 sha256sum <"$D/mnt/demo.img" | cut -d' ' -f1) ||
	die "cold read failed"
t1=$(ms)
cold=$(origin_bytes)
echo "  cold read: $(rate "$SIZE" $((t1 - t0))); fetched $(mib "$cold") from the origin in $(wc -l <"$D/origin-access.log") requests"

# Remount so the warm read cannot come from the kernel page cache: it is
# served by imgcache's persistent block cache.
stop_imgcache
start_imgcache
t0=$(ms)
sum2=$(timeout 120 sha256sum <"$D/mnt/demo.img" | cut -d' ' -f1) ||
	die "warm read failed"
t1=$(ms)
warm=$(($(origin_bytes) - cold))
echo "  warm read after remount: $(rate "$SIZE" $((t1 - t0))); fetched $(mib "$warm") from the origin, $(mib $((SIZE - warm))) from the cache"
stop_imgcache

data=$(find "$D/cache/data" -name 'demo.img.*' -type f 2>/dev/null | head -n 1)
if [ -n "$data" ]; then
	echo "  cache: $(basename "$data") uses $(du -k "$data" | awk '{ printf "%.1f MiB", $1 / 1024 }') on disk (apparent size $(mib "$(stat -c %s "$data")"))"
fi
if command -v sqlite3 >/dev/null 2>&1; then
	n=$(sqlite3 -readonly "$D/cache/index.db" 'SELECT count(*) FROM blocks' 2>&1) ||
		n="? ($n)"
	echo "  index.db lists $n cached blocks of 64K"
fi

want=$(sha256sum <"$D/templates/demo.img" | cut -d' ' -f1)
if [ "$sum" = "$want" ] && [ "$sum2" = "$want" ]; then
	echo "  sha256 through the mount matches the origin (cold and warm): $want"
else
	die "sha256 mismatch: origin $want, cold $sum, warm $sum2"
fi
echo "demo OK"
