#!/bin/sh
# t-classes: pin classes (boot > high > low).
#  1. An index from before classes (schema version 1, built here with the
#     sqlite3 shell) is migrated: its pins are boot pins.  A config written
#     before classes ("pin = 0-1M") pins boot.
#  2. Three templates whose pins (boot, high, low; 1 MiB each) fill
#     cache_max: boot fills take the low template's blocks first, then the
#     high one's, and never a boot block (a boot pin past what fits is
#     fetched only partly, the rest served uncached), checked on the data
#     files' extents.
#  3. A high fill displaces low blocks, a low fill never high ones; a
#     range's class changes with one imgcache-pin --class.
#  5. (with 2 and 3) imgcache-report's per-class figures (JSON,
#     Prometheus, the table) and --check-pinned --class, and the
#     per-class xattrs, match the data files.
#  4. After a restart the daemon pre-warms the pins that are not resident,
#     unasked: every template's boot pins, then high, then low, within a
#     class the most recently used template first, seen in the order of
#     the origin's reads (originfs log).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MIB=1048576
PIN=$top_builddir/tools/imgcache-pin
REPORT=$top_builddir/tools/imgcache-report
[ -x "$PIN" ] || fail "$PIN is not built (run make)"
[ -x "$REPORT" ] || fail "$REPORT is not built (run make)"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 shell not installed"
for n in a b c; do make_file "$T/src/$n.img" 4; done
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
		awk 'NR > 1 { print $3, $2, $NF }'
}

rep() { # ARGS...: imgcache-report on our cache; output in $T/rep, $RC
	RC=0
	bounded "$REPORT" --cache-dir "$CACHE" --no-advance "$@" >"$T/rep" \
		2>"$T/rep.err" || RC=$?
}

# jclass NAME CLASS FIELD: one per-class figure of the last --json report.
jclass() {
	python3 - "$T/rep" "$1" "$2" "$3" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in d["templates"]}
print(t[sys.argv[2]]["classes"][sys.argv[3]][sys.argv[4]])
PYEOF
}

# xattr NAME KEY: user.imgcache.KEY of the mounted template NAME.
xattr() {
	bounded getfattr --only-values -n "user.imgcache.$2" "$MNT/$1" 2>/dev/null
}

start_daemon() { # CONF
	start_imgcache "$1" "$MNT"
	wait_for 10 test -S "$CACHE/ctl.sock" || fail "no control socket"
}

# --- 1. an index and a config from before classes
mkdir -p "$CACHE"
chmod 700 "$CACHE"
size=$(stat -c %s "$T/src/a.img")
sqlite3 "$CACHE/index.db" <<SQL || fail "cannot build a version 1 index"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE templates (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
 origin TEXT, size INTEGER, mtime_ns INTEGER, validator TEXT,
 generation INTEGER, block_size INTEGER, quota INTEGER);
CREATE TABLE blocks (tid INTEGER, gen INTEGER, blk INTEGER, csum INTEGER,
 atime INTEGER, flags INTEGER, PRIMARY KEY (tid, gen, blk)) WITHOUT ROWID;
CREATE TABLE pins (tid INTEGER, start INTEGER, len INTEGER, source TEXT);
CREATE TABLE events (id INTEGER PRIMARY KEY, ts INTEGER, tid INTEGER,
 kind TEXT, blocks INTEGER, bytes INTEGER, detail TEXT);
CREATE TABLE counters (tid INTEGER PRIMARY KEY, hits INTEGER, misses INTEGER,
 origin_bytes INTEGER, origin_reads INTEGER, fill_errors INTEGER,
 evictions INTEGER, evicted_bytes INTEGER, uncached INTEGER);
CREATE INDEX events_ts ON events (ts);
CREATE INDEX pins_tid ON pins (tid);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO templates (id, name, origin, size, mtime_ns, validator,
 generation, block_size, quota)
 VALUES (1, 'c.img', '$T/omnt/c.img', $size, 0, '', 1, 65536, 0);
INSERT INTO pins VALUES (1, 2097152, 65536, '');
SQL
{
	global_section
	printf 'readahead = 0\nprewarm = no\n'
	tmpl a.img 0-1M
	tmpl c.img
} >"$T/conf0"
start_daemon "$T/conf0"
assert_eq "an index from before classes is migrated to schema version 2" 2 \
	"$(sqlite3 "$CACHE/index.db" \
		"SELECT value FROM meta WHERE key = 'schema_version'")"
assert_eq "... and its pin is a boot pin" "boot 2097152-2162688 0%" \
	"$(classes c.img)"
assert_eq "a config from before classes (pin = 0-1M) pins boot" \
	"boot 0-1048576 0%" "$(classes a.img)"
stop_imgcache "$MNT"
rm -rf "$CACHE"

# --- 2. boot displaces low, then high, never boot (cache_max 3M)
{
	global_section
	printf 'readahead = 0\ncache_max = 3M\n'
	tmpl a.img 0-1M
	tmpl b.img high:0-1M
	tmpl c.img low:0-1M
} >"$T/conf1"
start_daemon "$T/conf1"
# The daemon pre-warms them (prewarm = yes is the default): all three fit.
wait_for 20 sh -c "[ \"\$('$PIN' --cache-dir '$CACHE' --list | \
	awk 'NR > 1 && \$NF == \"100%\"' | wc -l)\" = 3 ]" ||
	fail "the pins were not pre-warmed: $(classes a.img; classes b.img; classes c.img)"
assert_eq "pre-warmed: the classes as configured" \
	"boot 0-1048576 100%|high 0-1048576 100%|low 0-1048576 100%" \
	"$(classes a.img)|$(classes b.img)|$(classes c.img)"
assert_eq "pre-warmed: a.img's data file holds 1 MiB" "$MIB" "$(data a.img)"
assert_eq "pre-warmed: b.img's data file holds 1 MiB" "$MIB" "$(data b.img)"
assert_eq "pre-warmed: c.img's data file holds 1 MiB" "$MIB" "$(data c.img)"
icpin a.img 1M-2M
assert_eq "a second boot MiB is fetched" 0 "$rc"
assert_eq "... taking the low template's blocks (c.img)" 0 "$(data c.img)"
assert_eq "... and none of the high one's (b.img)" "$MIB" "$(data b.img)"
assert_eq "... a.img holds 2 MiB" $((2 * MIB)) "$(data a.img)"
icpin a.img 2M-3M
assert_eq "a third boot MiB is fetched" 0 "$rc"
assert_eq "... taking the high template's blocks now (b.img)" 0 "$(data b.img)"
assert_eq "... a.img holds 3 MiB" $((3 * MIB)) "$(data a.img)"
icpin a.img 3M-4M
assert_eq "a boot pin past cache_max: accepted, fetched only partly (exit 1)" \
	1 "$rc"
assert_eq "... no boot block was evicted for it" $((3 * MIB)) "$(data a.img)"
bounded cmp "$MNT/a.img" "$T/src/a.img" ||
	not_ok "a.img reads differ from the origin"
ok "a.img reads equal the origin (the rest served uncached)"
assert_le "the cache holds at most cache_max" \
	$(($(data a.img) + $(data b.img) + $(data c.img))) $((3 * MIB))
if command -v getfattr >/dev/null 2>&1; then
	assert_eq "xattr pinned_bytes.boot of a.img" $((4 * MIB)) \
		"$(xattr a.img pinned_bytes.boot)"
	assert_eq "xattr pinned_present_bytes.boot of a.img = its data file" \
		"$(data a.img)" "$(xattr a.img pinned_present_bytes.boot)"
	assert_eq "xattr pinned_present_bytes.high of b.img = its data file" \
		"$(data b.img)" "$(xattr b.img pinned_present_bytes.high)"
	assert_eq "xattr pinned_bytes.low of c.img" "$MIB" \
		"$(xattr c.img pinned_bytes.low)"
else
	not_ok "getfattr missing: cannot check the per-class xattrs"
fi
stop_imgcache "$MNT"
# The report reads the index: with the daemon stopped it is final.
rep --json
assert_eq "report: a.img boot pinned bytes" $((4 * MIB)) \
	"$(jclass a.img boot pinned_bytes)"
assert_eq "report: a.img boot present bytes = its data file" "$(data a.img)" \
	"$(jclass a.img boot present_bytes)"
assert_eq "report: b.img high present bytes = its data file" "$(data b.img)" \
	"$(jclass b.img high present_bytes)"
assert_eq "report: c.img low present bytes = its data file" "$(data c.img)" \
	"$(jclass c.img low present_bytes)"
assert_eq "report: c.img's 16 low blocks evicted" 16 \
	"$(jclass c.img low evicted_blocks)"
assert_eq "report: b.img's 16 high blocks evicted" 16 \
	"$(jclass b.img high evicted_blocks)"
assert_eq "report: no boot block evicted" 0 "$(jclass a.img boot evicted_blocks)"
rep --prometheus
check "Prometheus: a.img's boot present bytes" grep -qx \
	"imgcache_class_present_bytes{template=\"a.img\",class=\"boot\"} $(data a.img)" \
	"$T/rep"
check "Prometheus: c.img's low evictions" grep -qx \
	"imgcache_class_evicted_blocks_total{template=\"c.img\",class=\"low\"} 16" \
	"$T/rep"
rep
check "the table lists the classes" grep -Eq "^b.img +high +1.0M +0 +0% +16$" \
	"$T/rep"
rep --check-pinned --class boot a.img
assert_eq "--check-pinned --class boot a.img: its boot set is not all resident" 1 "$RC"
assert_eq "... and says how much" "a.img: $MIB boot pinned bytes missing" \
	"$(cut -d' ' -f1-6 "$T/rep")"
rep --check-pinned --class low a.img
assert_eq "--check-pinned --class low a.img: no low pins, nothing missing" 0 "$RC"
rm -rf "$CACHE"

# --- 3. high displaces low, low never high; a class change is one command
{
	global_section
	printf 'readahead = 0\ncache_max = 2M\nprewarm = no\n'
	tmpl b.img
	tmpl c.img low:0-2M
} >"$T/conf2"
start_daemon "$T/conf2"
icpin c.img
assert_eq "c.img's low pins (2 MiB) are fetched" 0 "$rc"
assert_eq "... its data file holds 2 MiB" $((2 * MIB)) "$(data c.img)"
icpin --no-fetch --class low b.img 0-1M
assert_eq "b.img pinned low" "low 0-1048576 0%" "$(classes b.img)"
icpin --class high b.img 0-1M
assert_eq "b.img moved to high with one command (and fetched)" 0 "$rc"
assert_eq "... its pin is high now, and resident" "high 0-1048576 100%" \
	"$(classes b.img)"
assert_eq "... its fill displaced low blocks: b.img holds 1 MiB" "$MIB" \
	"$(data b.img)"
assert_le "... c.img lost them" "$(data c.img)" "$MIB"
icpin c.img
assert_eq "warming c.img's low pins again cannot complete (exit 1)" 1 "$rc"
check "... and says how much could not be fetched" \
	grep -q "could not be fetched" "$T/out"
assert_eq "... a low fill never displaces high blocks: b.img keeps 1 MiB" \
	"$MIB" "$(data b.img)"
assert_le "... c.img only took what was free" "$(data c.img)" \
	$((2 * MIB - $(data b.img)))
stop_imgcache "$MNT"
rep --json
assert_eq "report: c.img low present bytes = its data file" "$(data c.img)" \
	"$(jclass c.img low present_bytes)"
assert_eq "report: b.img high present bytes = its data file" "$(data b.img)" \
	"$(jclass b.img high present_bytes)"
rep --check-pinned --class high b.img
assert_eq "--check-pinned --class high b.img: resident" 0 "$RC"
rep --check-pinned --class low c.img
assert_eq "--check-pinned --class low c.img: partly resident" 1 "$RC"
rep
assert_eq "a partly resident low pin needs no attention (exit 0)" 0 "$RC"
rm -rf "$CACHE"

# --- 4. after a restart, pre-warm resumes in class order
{
	global_section
	printf 'readahead = 0\nprewarm = no\n'
	tmpl a.img "low:0-256K, high:1M+256K"
	tmpl b.img "boot:0-256K, low:1M+256K"
	tmpl c.img "high:0-256K, 2M+256K"
} >"$T/conf3"
sed 's/^prewarm = no$/prewarm = yes/' "$T/conf3" >"$T/conf3y"
start_daemon "$T/conf3"
# Use them: a.img longest ago, then c.img, b.img the most recent.
for n in a c b; do
	bounded dd if="$MNT/$n.img" of=/dev/null bs=64K skip=48 count=1 \
		iflag=direct status=none
done
assert_eq "prewarm = no: nothing pinned was fetched" \
	"0% 0% 0% 0% 0% 0%" \
	"$(for n in a b c; do classes $n.img; done | awk '{ print $3 }' | xargs)"
stop_imgcache "$MNT"
from=$(($(count_reads "$OLOG") + 1))
start_daemon "$T/conf3y"
wait_for 20 sh -c "[ \"\$('$PIN' --cache-dir '$CACHE' --list | \
	awk 'NR > 1 && \$NF == \"100%\"' | wc -l)\" = 6 ]" ||
	fail "pre-warm after the restart did not finish"
# Name each origin read after the pin it serves; drop repeats.
order=$(awk -v from="$from" 'NR >= from {
	k = int($2 / 1048576)
	if ($1 == "/b.img" && k == 0) g = "b-boot"
	else if ($1 == "/c.img" && k == 2) g = "c-boot"
	else if ($1 == "/c.img" && k == 0) g = "c-high"
	else if ($1 == "/a.img" && k == 1) g = "a-high"
	else if ($1 == "/b.img" && k == 1) g = "b-low"
	else if ($1 == "/a.img" && k == 0) g = "a-low"
	else g = $1 "@" $2
	if (g != last) printf "%s ", g
	last = g
}' "$OLOG")
assert_eq "after a restart: boot of every template, then high, then low, most recently used first" \
	"b-boot c-boot c-high a-high b-low a-low " "$order"
stop_imgcache "$MNT"
