#!/bin/sh
# t-cachemax: the whole-cache bounds.  cache_max: three 16 MiB templates
# read one after another under cache_max = 6M hold no more than 6 MiB of
# data at rest (and at most in-flight fills more while reading), every read
# equals the origin, and the least recently used template is the one
# evicted.  min_free: on a 32 MiB tmpfs with min_free = 24M the cache
# leaves at least 24 MiB free at rest.  Also imgcache-pin's progress bar on
# a terminal (script(1) gives it one), and quiet output without.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MIB=1048576
PIN=$top_builddir/tools/imgcache-pin
for n in a b c; do make_file "$T/src/$n.img" 16; done
tmpl() { printf '\n[template %s]\norigin = %s\n' "$1" "$T/src/$1"; }
{
	global_section
	printf 'cache_max = 6M\n'
	tmpl a.img
	tmpl b.img
	tmpl c.img
} >"$T/conf"
MNT=$T/mnt

# cache_data: bytes of data held by every data file of the cache.
cache_data() {
	_sum=0
	for _f in "$CACHE"/data/*; do
		[ -f "$_f" ] || continue
		_sum=$((_sum + $(data_bytes "$_f")))
	done
	echo "$_sum"
}

start_imgcache "$T/conf" "$MNT"
for n in a b c; do
	bounded dd if="$MNT/$n.img" of="$T/$n.read" bs=1M iflag=direct status=none
	assert_same "$n.img read under cache_max equals the origin" \
		"$T/$n.read" "$T/src/$n.img"
	# In flight: one reader's fill (1 MiB request, readahead 4 MiB).
	assert_le "after reading $n.img: cache data within cache_max + in-flight" \
		"$(cache_data)" $((6 * MIB + 5 * MIB))
done
stop_imgcache "$MNT"
assert_le "cache data at rest within cache_max" "$(cache_data)" $((6 * MIB))
a_data=$(data_bytes "$(ls "$CACHE"/data/a.img.*)")
c_data=$(data_bytes "$(ls "$CACHE"/data/c.img.*)")
note "at rest: a.img $a_data, c.img $c_data bytes"
check "the least recently used template (a.img) was evicted first ($a_data < $c_data)" \
	[ "$a_data" -lt "$c_data" ]

# --- imgcache-pin on a terminal: a progress bar; without one: quiet.
if [ -x "$PIN" ] && command -v script >/dev/null 2>&1; then
	start_imgcache "$T/conf" "$MNT"
	wait_for 10 test -S "$CACHE/ctl.sock" || fail "no control socket"
	script -qec "'$PIN' --cache-dir '$CACHE' a.img 0-2M" /dev/null \
		>"$T/tty.out" 2>&1 || not_ok "imgcache-pin on a tty failed: $(cat "$T/tty.out")"
	check "on a terminal imgcache-pin draws a progress bar (bytes, %, rate, ETA)" \
		grep -q '100%.*/s.*ETA' "$T/tty.out"
	"$PIN" --cache-dir "$CACHE" b.img 0-1M >"$T/quiet.out" 2>&1 ||
		not_ok "imgcache-pin without a tty failed: $(cat "$T/quiet.out")"
	check "without a terminal it prints no progress" \
		sh -c "! grep -q ETA '$T/quiet.out'"
	stop_imgcache "$MNT"
else
	not_ok "imgcache-pin or script(1) missing: cannot test the progress bar"
fi

# --- min_free on a small tmpfs (root only).
if [ "$(id -u)" = 0 ] && mount_tmpfs "$T/small" 32m; then
	CACHE=$T/small/cache
	{
		global_section
		printf 'min_free = 24M\n'
		tmpl a.img
	} >"$T/conf2"
	start_imgcache "$T/conf2" "$MNT"
	bounded dd if="$MNT/a.img" of="$T/a2.read" bs=1M iflag=direct status=none
	assert_same "a.img read under min_free equals the origin" \
		"$T/a2.read" "$T/src/a.img"
	stop_imgcache "$MNT"
	free=$(($(stat -f -c '%a * %S' "$T/small")))
	note "free on the 32 MiB tmpfs at rest: $((free / 1024)) KiB"
	check "min_free: at least 24 MiB left free at rest" [ "$free" -ge $((24 * MIB)) ]
	check "the cache still holds some blocks" \
		[ "$(data_bytes "$(ls "$CACHE"/data/a.img.*)")" -gt 0 ]
else
	note "min_free part needs root and a tmpfs"
fi
