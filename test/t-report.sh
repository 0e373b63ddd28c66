#!/bin/sh
# t-report: imgcache-report figures against a scripted workload (known O_DIRECT
# reads -> known hits, misses, origin bytes; a small quota -> evictions), the
# "since the last report" cursor, --since, --no-advance, event pruning, the
# JSON document, the Prometheus textfile format line by line, the exit status
# of each state, and --check-pinned before and after reading the pinned range.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"
REPORT=$top_builddir/tools/imgcache-report
[ -x "$REPORT" ] || fail "$REPORT is not built (run make)"

KIB=1024
MIB=1048576
# a.img: 33 blocks, the last one 1000 bytes; b.img: 64 blocks, quota 16.
ASIZE=$((2 * MIB + 1000))
make_file_bytes "$T/src/a.img" "$ASIZE"
make_file "$T/src/b.img" 4
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"
{
	global_section
	printf 'cache_max = 64M\nmin_free = 0\n'
	printf '\n[template a.img]\norigin = %s\n' "$T/omnt/a.img"
	printf '\n[template b.img]\norigin = %s\nquota = 1M\n' "$T/omnt/b.img"
} >"$T/conf"
MNT=$T/mnt
DB=$CACHE/index.db

# rep ARGS...: run the report with our config; output in $T/out, errors in
# $T/err, exit status in $RC.
rep() {
	RC=0
	"$REPORT" --config "$T/conf" "$@" >"$T/out" 2>"$T/err" || RC=$?
}

# jget EXPR: evaluate EXPR on the last JSON output ($T/out); d is the
# document, t the templates by name.
jget() {
	python3 - "$T/out" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in d["templates"]}
print(eval(sys.argv[2]))
EOF
}

# rep_json ARGS...: a JSON report that python3 -m json.tool must accept.
rep_json() {
	rep --json "$@"
	if python3 -m json.tool "$T/out" >/dev/null 2>"$T/json.err"; then
		ok "JSON ($*) parses (exit $RC)"
	else
		not_ok "JSON ($*) parses: $(head -n 1 "$T/json.err")"
		sed 's/^/#   /' "$T/err" >&2
	fi
}

# dread FILE SKIP COUNT: O_DIRECT reads of COUNT 64K blocks from block SKIP,
# one open per block: two reads in a row on one handle would look sequential
# and start readahead, which would make the figures depend on timing.
dread() {
	_dr_b=$2
	while [ "$_dr_b" -lt $(($2 + $3)) ]; do
		bounded dd if="$1" of=/dev/null bs=64K skip="$_dr_b" count=1 \
			iflag=direct status=none
		_dr_b=$((_dr_b + 1))
	done
}

sql() { sqlite3 -cmd '.timeout 5000' "$DB" "$1"; }

# --- 1. while the daemon runs: nothing read yet, all well
start_imgcache "$T/conf" "$MNT"
rep_json --no-advance
assert_eq "fresh cache, daemon running: exit 0" 0 "$RC"
assert_eq "both templates listed" "a.img b.img" \
	"$(jget '" ".join(sorted(t))')"
assert_eq "size of a.img" "$ASIZE" "$(jget 't["a.img"]["size"]')"

# --- 2. scripted workload
dread "$MNT/a.img" 0 8 # cold: 8 misses, 512 KiB from the origin
dread "$MNT/a.img" 0 8 # warm: 8 hits
dread "$MNT/b.img" 0 64 # 4 MiB through a 1 MiB quota: evictions
rep_json --no-advance
assert_eq "report during the mount: exit 0" 0 "$RC"
stop_imgcache "$MNT" # saves the counters

# --- 3. first report: figures exact, window = everything recorded
rep_json
assert_eq "first report: exit 0" 0 "$RC"
assert_eq "window source" all "$(jget 'd["window"]["source"]')"
assert_eq "a.img misses" 8 "$(jget 't["a.img"]["misses"]')"
assert_eq "a.img hits" 8 "$(jget 't["a.img"]["hits"]')"
assert_eq "a.img hit ratio" 0.5 "$(jget 't["a.img"]["hit_ratio"]')"
assert_eq "a.img origin bytes" $((8 * 64 * KIB)) \
	"$(jget 't["a.img"]["origin_bytes"]')"
assert_eq "a.img cached bytes" $((8 * 64 * KIB)) \
	"$(jget 't["a.img"]["cached_bytes"]')"
assert_eq "a.img no evictions" 0 "$(jget 't["a.img"]["window"]["evicted_blocks"]')"
assert_eq "b.img misses" 64 "$(jget 't["b.img"]["misses"]')"
assert_eq "b.img hits" 0 "$(jget 't["b.img"]["hits"]')"
assert_eq "b.img origin bytes" $((4 * MIB)) \
	"$(jget 't["b.img"]["origin_bytes"]')"
bcached=$(jget 't["b.img"]["cached_blocks"]')
assert_le "b.img within its quota" "$(jget 't["b.img"]["cached_bytes"]')" "$MIB"
ev1=$(jget 't["b.img"]["window"]["evicted_blocks"]')
assert_eq "b.img evicted blocks since last report = read - cached" \
	$((64 - bcached)) "$ev1"
assert_eq "b.img evicted bytes since last report" $((ev1 * 64 * KIB)) \
	"$(jget 't["b.img"]["window"]["evicted_bytes"]')"
assert_eq "b.img cumulative evictions agree" "$ev1" \
	"$(jget 't["b.img"]["evicted_blocks"]')"
assert_eq "used = sum of cached" \
	"$(jget 't["a.img"]["cached_bytes"] + t["b.img"]["cached_bytes"]')" \
	"$(jget 'd["cache"]["used_bytes"]')"
assert_eq "cache_max from the config" $((64 * MIB)) \
	"$(jget 'd["cache"]["cache_max_bytes"]')"
assert_eq "status field" 0 "$(jget 'd["status"]')"
assert_eq "cursor stored" "$(jget 'd["window"]["last_event_id"]')" \
	"$(sql "select value from meta where key='report_cursor'")"

# --- 4. the cursor advanced: nothing new since
rep_json
assert_eq "second report: source" last_report "$(jget 'd["window"]["source"]')"
assert_eq "second report: 0 evicted since last" 0 \
	"$(jget 'd["window"]["evicted_blocks"]')"
check "second report: from_time set" [ "$(jget 'd["window"]["from_time"]')" != None ]
rep
assert_eq "table report: exit 0" 0 "$RC"
check "table report has a header row" grep -q '^TEMPLATE .* ORIGIN$' "$T/out"
check "table report: human sizes" grep -q '^b\.img *4\.0M ' "$T/out"
check "table report says all well" grep -q '^all well$' "$T/out"

# --- 5. more evictions; --no-advance leaves the cursor; --since
start_imgcache "$T/conf" "$MNT"
dread "$MNT/b.img" 0 64
stop_imgcache "$MNT"
rep_json --no-advance
ev2=$(jget 'd["window"]["evicted_blocks"]')
check "new evictions since the last report ($ev2)" [ "$ev2" -gt 0 ]
rep_json --no-advance
assert_eq "--no-advance left the cursor" "$ev2" \
	"$(jget 'd["window"]["evicted_blocks"]')"
rep_json --since 1h
assert_eq "--since 1h: every eviction" $((ev1 + ev2)) \
	"$(jget 'd["window"]["evicted_blocks"]')"
assert_eq "--since 1h: source" since "$(jget 'd["window"]["source"]')"
rep_json --since "$(date -d '+1 hour' '+%Y-%m-%dT%H:%M:%S')"
assert_eq "--since an ISO time to come: none" 0 \
	"$(jget 'd["window"]["evicted_blocks"]')"
rep_json --since $(($(date +%s) - 3600))
assert_eq "--since unix seconds" $((ev1 + ev2)) \
	"$(jget 'd["window"]["evicted_blocks"]')"
rep_json
assert_eq "--since did not move the cursor" "$ev2" \
	"$(jget 'd["window"]["evicted_blocks"]')"
rep_json
assert_eq "then the cursor moved" 0 "$(jget 'd["window"]["evicted_blocks"]')"

# --- 6. Prometheus textfile format, line by line
rep --prometheus
assert_eq "prometheus: exit 0" 0 "$RC"
if python3 - "$T/out" >"$T/prom.err" <<'EOF'; then
import re, sys
sample = re.compile(r'^imgcache_[a-z_]+(\{template="[^"]*"(,class="(boot|high|low)")?\})? [0-9.e+-]+$')
help_, type_, bad = set(), {}, []
for n, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip("\n")
    m = re.match(r"^# HELP (imgcache_[a-z_]+) \S", line)
    if m:
        help_.add(m.group(1))
        continue
    m = re.match(r"^# TYPE (imgcache_[a-z_]+) (gauge|counter)$", line)
    if m:
        if m.group(1) not in help_:
            bad.append("%d: TYPE before HELP" % n)
        type_[m.group(1)] = m.group(2)
        continue
    if not sample.match(line):
        bad.append("%d: not a sample: %r" % (n, line))
        continue
    name = line.split("{")[0].split(" ")[0]
    if name not in type_:
        bad.append("%d: %s has no TYPE before it" % (n, name))
    elif type_[name] == "counter" and not name.endswith("_total"):
        bad.append("%d: counter %s without _total" % (n, name))
if bad or not type_:
    print("; ".join(bad[:5]) or "no metrics")
    sys.exit(1)
EOF
	ok "prometheus: every line is HELP, TYPE or a well-formed sample"
else
	not_ok "prometheus format: $(cat "$T/prom.err")"
fi
check "prometheus: misses of a.img" \
	grep -qx 'imgcache_misses_total{template="a.img"} 8' "$T/out"
check "prometheus: origin bytes of b.img" grep -qx \
	"imgcache_origin_bytes_total{template=\"b.img\"} $((8 * MIB))" "$T/out"
check "prometheus: attention 0" grep -qx 'imgcache_attention 0' "$T/out"

# --- 7. exit status for each state (daemon stopped: the index is ours)
AID=$(sql "select id from templates where name='a.img'")
sql "update templates set quota = 65536 where name = 'a.img'"
rep_json --no-advance
assert_eq "over quota: exit 1" 1 "$RC"
assert_eq "over quota flagged" True "$(jget 't["a.img"]["over_quota"]')"
assert_eq "over quota: one reason given" "['a.img: 512.0K cached, over quota 64.0K']" \
	"$(jget 'd["attention_reasons"]')"
rep --no-advance
check "table names the over-quota template" \
	grep -q '^  a\.img: .* over quota' "$T/out"
rep --prometheus
assert_eq "prometheus publishes even when over quota: exit 0" 0 "$RC"
check "prometheus: attention 1" grep -qx 'imgcache_attention 1' "$T/out"
sql "update templates set quota = 0 where name = 'a.img'"

sql "insert into events (ts, tid, kind, blocks, bytes, detail) values
     (strftime('%s','now'), $AID, 'error', 2, 131072,
      'origin read failed: Input/output error')"
rep_json
assert_eq "fill error since the last report: exit 1" 1 "$RC"
assert_eq "fill errors counted" 1 "$(jget 't["a.img"]["window"]["fill_errors"]')"
assert_eq "last error text" "origin read failed: Input/output error" \
	"$(jget 't["a.img"]["window"]["last_error"]')"
rep
assert_eq "after a report, old fill errors no longer alert: exit 0" 0 "$RC"

sed 's/^min_free = 0$/min_free = 100%/' "$T/conf" >"$T/conf.full"
RC=0
"$REPORT" --config "$T/conf.full" --no-advance >"$T/out" 2>&1 || RC=$?
assert_eq "below min_free: exit 1" 1 "$RC"
check "below min_free: said so" grep -q 'below min_free' "$T/out"

# --- 8. event pruning when the cursor advances
sql "insert into events (ts, tid, kind, blocks, bytes) values
     (strftime('%s','now') - 40 * 86400, $AID, 'evict', 1, 65536)"
# The newest event is never pruned (ids must keep growing): add one after.
sql "insert into events (ts, tid, kind, blocks, bytes) values
     (strftime('%s','now'), $AID, 'generation', 0, 0)"
rep --no-advance
assert_eq "--no-advance prunes nothing" 1 \
	"$(sql "select count(*) from events where ts < strftime('%s','now') - 35 * 86400")"
rep
assert_eq "events older than 30 days pruned" 0 \
	"$(sql "select count(*) from events where ts < strftime('%s','now') - 35 * 86400")"

# --- 9. --check-pinned before and after reading the pinned range
# Pins: 256 KiB at 1 MiB (blocks 16-19), and two ranges in the short tail
# (block 31 and the 1000-byte block 32; block 31 counted once).
PINNED=$((4 * 64 * KIB + 64 * KIB + 1000))
sql "insert into pins (tid, start, len, source) values
     ($AID, $MIB, $((256 * KIB)), ''),
     ($AID, $((2 * MIB - 60000)), 10000, ''),
     ($AID, $((2 * MIB - 10)), 2000, '')"
rep --check-pinned
assert_eq "--check-pinned with pinned blocks missing: exit 1" 1 "$RC"
assert_eq "--check-pinned names the template and bytes" \
	"a.img: $PINNED pinned bytes missing" "$(cut -d' ' -f1-5 "$T/out")"
rep --check-pinned b.img
assert_eq "--check-pinned b.img (no pins): exit 0" 0 "$RC"
rep --check-pinned nosuch.img
assert_eq "--check-pinned of an unknown template: exit 2" 2 "$RC"
rep_json --no-advance
assert_eq "pins missing: exit 1" 1 "$RC"
assert_eq "pinned bytes (short last block)" "$PINNED" \
	"$(jget 't["a.img"]["pinned_bytes"]')"
assert_eq "pinned present bytes" 0 "$(jget 't["a.img"]["pinned_present_bytes"]')"

start_imgcache "$T/conf" "$MNT"
dread "$MNT/a.img" 16 4
dread "$MNT/a.img" 31 2
rep # moves the cursor on a short read-write connection beside the daemon
check "advancing report beside the running daemon (exit $RC)" [ "$RC" -le 1 ]
assert_eq "no error beside the running daemon" "" "$(cat "$T/err")"
stop_imgcache "$MNT"
npins=$(sql "select count(*) from pins where tid = $AID")
if [ "$npins" = 0 ]; then
	# The daemon replaced the pins with the config's (none): put them back;
	# the blocks read above are what --check-pinned must see.
	note "daemon dropped the unconfigured pins; re-inserting them"
	sql "insert into pins (tid, start, len, source) values
	     ($AID, $MIB, $((256 * KIB)), ''),
	     ($AID, $((2 * MIB - 60000)), 10000, ''),
	     ($AID, $((2 * MIB - 10)), 2000, '')"
fi
rep --check-pinned
assert_eq "--check-pinned after reading the pinned range: exit 0" 0 "$RC"
assert_eq "--check-pinned prints nothing when all present" "" "$(cat "$T/out")"
rep_json --no-advance
assert_eq "pinned present = pinned" "$PINNED" \
	"$(jget 't["a.img"]["pinned_present_bytes"]')"
assert_eq "a.img cached bytes include the short block" \
	$(((8 + 4 + 1) * 64 * KIB + 1000)) "$(jget 't["a.img"]["cached_bytes"]')"
rep
assert_eq "all well again: exit 0" 0 "$RC"

# --- 10. label and JSON escaping of odd names straight from the index
sql "insert into templates (name, origin, size, generation, block_size, quota)
     values ('q\"b\\s' || char(10) || 'x', 'https://user:secret@h/x?tok=1',
             0, 1, 65536, 0)"
rep_json --no-advance
assert_eq "odd name round-trips through JSON" "$(printf 'q"b\\s\nx')" \
	"$(jget 't[[n for n in t if n.startswith("q")][0]]["name"]')"
check "origin credentials masked" \
	[ "$(jget '[x["origin"] for x in d["templates"] if "secret" in x["origin"]]')" = "[]" ]
rep --prometheus
check "prometheus label escaped" \
	grep -qxF 'imgcache_size_bytes{template="q\"b\\s\nx"} 0' "$T/out"

# --- 11. usage errors and an unreadable cache: exit 2
RC=0
"$REPORT" --cache-dir "$T/nonexistent" >"$T/out" 2>"$T/err" || RC=$?
assert_eq "missing cache dir: exit 2" 2 "$RC"
check "missing cache dir: clear message" grep -q 'no cache index' "$T/err"
rep --bogus-flag
assert_eq "bad flag: exit 2" 2 "$RC"
rep --since yesterdayish
assert_eq "bad --since: exit 2" 2 "$RC"
mkdir -p "$T/junk"
echo "not a database" >"$T/junk/index.db"
RC=0
"$REPORT" --cache-dir "$T/junk" >"$T/out" 2>"$T/err" || RC=$?
assert_eq "unreadable index: exit 2" 2 "$RC"
check "unreadable index left in place" grep -q 'not a database' "$T/junk/index.db"
printf '[global]\ncache_max = lots\n' >"$T/bad.conf"
RC=0
"$REPORT" --config "$T/bad.conf" >"$T/out" 2>"$T/err" || RC=$?
assert_eq "bad config: exit 2" 2 "$RC"
check "bad config: FILE:LINE" grep -q 'bad.conf:2' "$T/err"
