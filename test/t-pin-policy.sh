#!/bin/sh
# t-pin-policy: the pin classes' policy between sources and warms.
#  1. Sources: a range pinned boot with imgcache-pin stays boot (and is
#     not evicted by another template's boot fill) when the config names
#     it "pin = low:..." and is reloaded; a range dropped from the config
#     keeps the tool's pin; imgcache-pin --unpin removes only the tool's
#     pin (the config's low pin stays); the sources survive a restart.
#  2. Background warms take only free room or weaker classes: two
#     templates whose low pins (2 MiB each) do not fit cache_max (3M)
#     together are warmed up to what fits; passes after reloads fetch
#     nothing more (the origin's log), instead of each evicting the
#     other's.
#  3. Recency after a restart is the last use, hits included: a template
#     filled first but read again (a hit) after another's fill is
#     pre-warmed first after a restart (the origin's log).
#  4. imgcache-pin warms, and judges its exit status on, only the class it
#     pinned: a boot pin exits 0 beside low pins that do not fit.
#  5. A paced warm stops when nobody waits for it: imgcache-pin --rate
#     killed mid-warm, the daemon cancels the warm (the origin's log stops
#     growing); a daemon stopped while its pre-warm waits for warm_rate
#     (64K) exits within a few seconds.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MIB=1048576
PIN=$top_builddir/tools/imgcache-pin
[ -x "$PIN" ] || fail "$PIN is not built (run make)"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 shell not installed"
for n in a b c d; do make_file "$T/src/$n.img" 4; done
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"
MNT=$T/mnt

tmpl() { # NAME [PIN-VALUE]
	printf '\n[template %s]\norigin = %s\n' "$1" "$T/omnt/$1"
	[ -z "${2:-}" ] || printf 'pin = %s\n' "$2"
}

# data NAME: bytes the cache's data file of template NAME holds.
data() {
	_f=$(ls "$CACHE"/data/"$1".* 2>/dev/null | head -n 1)
	if [ -n "$_f" ]; then data_bytes "$_f"; else echo 0; fi
}

icpin() { # ARGS...: imgcache-pin on our cache; exit status in $rc
	rc=0
	bounded "$PIN" --cache-dir "$CACHE" "$@" >"$T/out" 2>&1 || rc=$?
}

# classes NAME: "CLASS START-END PCT" per pinned range (--list).
classes() {
	bounded "$PIN" --cache-dir "$CACHE" --list "$1" |
		awk 'NR > 1 { print $3, $2, $NF }' | xargs
}

start_daemon() { # CONF
	start_imgcache "$1" "$MNT"
	wait_for 10 test -S "$CACHE/ctl.sock" || fail "no control socket"
	wait_for 10 grep -q "config pins applied" "$IMGCACHE_LOG" ||
		fail "the config pins were not applied"
}

# reconf CONF: make CONF the config and reload; wait for its pins.
reconf() {
	cp "$1" "$T/conf"
	_n=$(grep -c "config pins applied" "$IMGCACHE_LOG" || true)
	reload_imgcache
	wait_for 10 sh -c "[ \$(grep -c 'config pins applied' '$IMGCACHE_LOG') -gt $_n ]" ||
		fail "the config pins were not applied after the reload"
}

# --- 1. config pins and tool pins are separate sources
conf() { # PIN-VALUE-OF-a.img
	global_section
	printf 'readahead = 0\nprewarm = no\ncache_max = 2M\n'
	tmpl a.img "$1"
	tmpl b.img
}
conf "" >"$T/conf.none"
conf "low:0-1M" >"$T/conf.low"
cp "$T/conf.none" "$T/conf"
start_daemon "$T/conf"
icpin a.img 0-1M
assert_eq "the tool pins a.img 0-1M boot (and fetches it)" 0 "$rc"
reconf "$T/conf.low"
assert_eq "pin = low:SAME in the config and a reload: still boot" \
	"boot 0-1048576 100%" "$(classes a.img)"
icpin b.img 0-2M
assert_eq "another template's boot pin past cache_max is fetched only partly" \
	1 "$rc"
assert_eq "... and evicts none of a.img's blocks: they are boot" "$MIB" \
	"$(data a.img)"
reconf "$T/conf.none"
assert_eq "the range dropped from the config keeps the tool's pin" \
	"boot 0-1048576 100%" "$(classes a.img)"
reconf "$T/conf.low"
icpin --unpin a.img 0-1M
assert_eq "imgcache-pin --unpin removes the tool's pin only: the config's low pin stays" \
	"low 0-1048576 100%" "$(classes a.img)"
icpin a.img 1M-2M
stop_imgcache "$MNT"
assert_eq "the index keeps each pin's source" "config low 0|tool boot 1048576" \
	"$(sqlite3 -separator ' ' "$CACHE/index.db" "SELECT source, class, start
		FROM pins WHERE tid = (SELECT id FROM templates
		WHERE name = 'a.img') ORDER BY start" | paste -sd'|')"
start_daemon "$T/conf"
assert_eq "after a restart: the config's low pin and the tool's boot pin" \
	"boot 1048576-2097152 low 0-1048576" \
	"$(classes a.img | awk '{ print $1, $2, $4, $5 }')"
stop_imgcache "$MNT"
rm -rf "$CACHE"

# --- 2. background warms do not evict their own class
{
	global_section
	printf 'readahead = 0\ncache_max = 3M\n'
	tmpl c.img low:0-2M
	tmpl d.img low:0-2M
} >"$T/conf.low2"
cp "$T/conf.low2" "$T/conf"
passes() { grep -c "pre-warm: pass done" "$IMGCACHE_LOG" || true; }
start_daemon "$T/conf"
wait_for 20 sh -c "[ \$(grep -c 'pre-warm: pass done' '$IMGCACHE_LOG') -ge 1 ]" ||
	fail "the first pre-warm pass did not end"
first=$(count_bytes "$OLOG")
note "origin bytes after the first pass: $first"
assert_le "the first pass fetched at most cache_max and a chunk" \
	$(($(data c.img) + $(data d.img))) $((3 * MIB))
for i in 1 2 3; do
	n=$(passes)
	reconf "$T/conf.low2"
	wait_for 20 sh -c "[ \$(grep -c 'pre-warm: pass done' '$IMGCACHE_LOG') -gt $n ]" ||
		fail "pre-warm pass $((i + 1)) did not end"
done
assert_le "three more passes (reloads) fetch nothing more from the origin" \
	"$(count_bytes "$OLOG")" "$first"
assert_eq "... and the cache still holds 3 MiB of low pins" $((3 * MIB)) \
	$(($(data c.img) + $(data d.img)))
check "... the warm says why it stops" grep -q "no room without evicting" \
	"$IMGCACHE_LOG"
stop_imgcache "$MNT"
rm -rf "$CACHE"

# --- 3. the pre-warm order after a restart follows the last use (hits too)
conf3() { # PREWARM
	global_section
	printf 'readahead = 0\nprewarm = %s\n' "$1"
	tmpl a.img "low:2M+256K"
	tmpl b.img "low:2M+256K"
}
conf3 no >"$T/conf"
start_daemon "$T/conf"
rd() { bounded dd if="$MNT/$1" of=/dev/null bs=64K count=1 iflag=direct status=none; }
rd a.img
rd b.img # the newest fill
s=$(date +%s)
wait_for 3 sh -c "[ \$(date +%s) -gt $s ]" || fail "the clock does not move"
rd a.img # a hit: the newest use
stop_imgcache "$MNT"
from=$(($(count_reads "$OLOG") + 1))
conf3 yes >"$T/conf"
start_daemon "$T/conf"
wait_for 20 sh -c "[ \"\$('$PIN' --cache-dir '$CACHE' --list | \
	awk 'NR > 1 && \$NF == \"100%\"' | wc -l)\" = 2 ]" ||
	fail "pre-warm after the restart did not finish"
order=$(awk -v from="$from" 'NR >= from && $2 >= 2097152 {
	if ($1 != last) printf "%s ", $1
	last = $1
}' "$OLOG")
assert_eq "after a restart: the template used last (a hit) is pre-warmed first" \
	"/a.img /b.img " "$order"
stop_imgcache "$MNT"
rm -rf "$CACHE"

# --- 4. imgcache-pin warms only the class it pinned
{
	global_section
	printf 'readahead = 0\nprewarm = no\ncache_max = 1M\n'
	tmpl a.img "low:1M-3M"
} >"$T/conf"
start_daemon "$T/conf"
icpin a.img 0-256K
assert_eq "pinning a boot range exits 0 beside low pins that cannot fit" 0 "$rc"
assert_eq "... its boot range is resident, the low pins untouched" \
	"boot 0-262144 100% low 1048576-3145728 0%" "$(classes a.img)"
icpin --class low a.img
assert_eq "warming the low pins (--class low, no items) cannot complete: exit 1" \
	1 "$rc"
assert_eq "... and the boot range stays" "boot 0-262144 100%" \
	"$(classes a.img | cut -d' ' -f1-3)"
stop_imgcache "$MNT"
rm -rf "$CACHE"

# --- 5. paced warms stop: a client that goes away, a daemon that stops
# grew N: the origin has served more than N bytes of a.img.
grew() { [ "$(count_bytes "$OLOG" /a.img)" -gt "$1" ]; }
{
	global_section
	printf 'readahead = 0\nprewarm = no\n'
	tmpl a.img
} >"$T/conf"
start_daemon "$T/conf"
b=$(count_bytes "$OLOG" /a.img)
"$PIN" --cache-dir "$CACHE" --rate 256K a.img 0-4M >"$T/pin.out" 2>&1 &
pinpid=$!
wait_for 10 grew "$b" || fail "the paced warm did not start"
kill "$pinpid"
wait "$pinpid" 2>/dev/null || true
check "the daemon cancels the warm of a client that went away" \
	wait_for 5 grep -q "warm of a.img cancelled" "$IMGCACHE_LOG"
b=$(count_bytes "$OLOG" /a.img)
# A chunk is 1 MiB: at 256K/s the next one would be read within 4 s.
if wait_for 6 grew "$b"; then
	not_ok "the origin's log stops growing once the client is gone ($b, then $(count_bytes "$OLOG" /a.img))"
else
	ok "the origin's log stops growing once the client is gone"
fi
stop_imgcache "$MNT"
rm -rf "$CACHE"
{
	global_section
	printf 'readahead = 0\nwarm_rate = 64K\n'
	tmpl a.img 0-4M
} >"$T/conf"
b=$(count_bytes "$OLOG" /a.img)
start_daemon "$T/conf"
wait_for 10 grew "$b" || fail "the paced pre-warm did not start"
t0=$(now_ms)
stop_imgcache "$MNT"
assert_le "a daemon stopped while its pre-warm waits for warm_rate exits within 5 s (ms)" \
	$(($(now_ms) - t0)) 5000
rm -rf "$CACHE"
