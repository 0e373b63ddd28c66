#!/bin/sh
# t-bench-smoke: `make bench` in smoke mode (16 MiB template, 1 s fio jobs)
# exits 0, prints its header and table, gives every imgcache row a number or
# a reason, the core rows a number, writes the markdown table, and leaves no
# mount, process or temporary directory behind.  No performance assertions:
# benchmarks are not timed tests.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
LAT=$top_builddir/test/bench/lat
[ -x "$LAT" ] || fail "$LAT is not built (run make check)"
command -v bash >/dev/null 2>&1 || skip "bash not installed"

rc=0
BENCH_SIZE=16M BENCH_FIO_SECONDS=1 BENCH_TIMEOUT=30 BENCH_DIR=$T BENCH_TMPFS_ROUNDS=1 \
	BENCH_MD=$T/bench.md BENCH_PEERS=0 \
	timeout -k 5 100 bash "$top_srcdir/test/bench/bench.sh" "$top_builddir" \
	>"$T/out" 2>"$T/err" || rc=$?
assert_eq "bench exits 0" 0 "$rc"
[ "$rc" = 0 ] || show_log "$T/err"
sed 's/^/# /' "$T/out"

check "header names the machine" grep -q '^machine: [0-9]* CPUs, .* GiB RAM, kernel ' "$T/out"
check "header names SIZE" grep -q '^SIZE: 16M (16777216 bytes' "$T/out"
check "table has its column header" \
	grep -Eq '^figure +value +unit +reference +ratio +target$' "$T/out"

# value FIGURE: the value column of FIGURE's row ("" when there is none).
value() {
	awk -v f="$1  " 'index($0, f) == 1 {
		rest = substr($0, length(f) + 1); split(rest, a, " "); print a[1]; exit }' \
		"$T/out"
}
# reason FIGURE: why FIGURE was not measured ("" when it was).
reason() {
	awk -v f="  $1: " 'index($0, f) == 1 { print substr($0, length(f) + 1); exit }' \
		"$T/out"
}
isnum() {
	case $1 in '' | *[!0-9.]* | *.*.*) return 1 ;; esac
}

# Every imgcache row: a number, or n/a and a reason.
rows=$(awk '/^-+$/ { t = 1; next } t && /^$/ { exit }
	t && /^imgcache / { print }' "$T/out" | wc -l)
if [ "$rows" -ge 10 ]; then
	ok "table has $rows imgcache rows"
else
	not_ok "table has $rows imgcache rows (expected >= 10)"
fi
awk '/^-+$/ { t = 1; next } t && /^$/ { exit } t && /^imgcache / { print }' \
	"$T/out" | sed 's/  .*//' >"$T/figs"
bad=0
while read -r fig; do
	v=$(value "$fig")
	if isnum "$v"; then
		:
	elif [ "$v" = n/a ] && [ -n "$(reason "$fig")" ]; then
		:
	else
		not_ok "row '$fig': value '$v' is neither a number nor n/a with a reason"
		bad=1
	fi
done <"$T/figs"
[ "$bad" = 0 ] && ok "every imgcache row has a number or a reason"

# The core rows must be numbers, unless this machine cannot take them (no
# nginx: HTTP rows; not root: no drop_caches for the warm rows).
for fig in "imgcache cold seq, HTTP origin" "imgcache cold seq, file origin" \
	"imgcache warm seq, buffered" "imgcache warm seq, O_DIRECT" \
	"imgcache first-touch rand 4K, median of 64" \
	"imgcache first-touch rand 4K, p99 of 64" \
	"imgcache 8 cold readers, origin bytes"; do
	v=$(value "$fig")
	why=$(reason "$fig")
	if isnum "$v"; then
		ok "$fig: $v"
	elif [ "$v" = n/a ] && echo "$why" | grep -Eq \
		'nginx not installed|curl not installed|needs root'; then
		note "$fig not measured here: $why"
	else
		not_ok "$fig: value '$v'${why:+ ($why)}"
	fi
done

# Start-up with a 1M-block index: a number wherever sqlite3 is installed
# (the bench writes the rows with it; an INSERT naming no columns broke
# when the index gained blocks.sha, and the row said n/a unnoticed).
fig="imgcache start-up with a 1M-block index"
v=$(value "$fig")
if isnum "$v"; then
	ok "$fig: $v"
elif ! command -v sqlite3 >/dev/null 2>&1; then
	note "$fig not measured here: sqlite3 not installed"
else
	not_ok "$fig: value '$v' ($(reason "$fig"))"
fi

# The cold-read limits (issue 14): the cache disk's O_DIRECT write rates,
# the CPU split and the daemon's CPU per GiB, and the target ratio.
for fig in "O_DIRECT write to the cache filesystem, 64 KiB writes" \
	"O_DIRECT write to the cache filesystem, 2 MiB writes" \
	"imgcache cold seq HTTP vs min(curl, O_DIRECT write 64K)" \
	"machine CPU during cold seq HTTP: busy" \
	"machine CPU during cold seq HTTP: iowait" \
	"machine CPU during cold seq HTTP: idle" \
	"imgcache daemon CPU per GiB of cold seq HTTP" \
	"imgcache daemon CPU per GiB, cold seq HTTP, cache on tmpfs, kernel_readahead = 1M"; do
	v=$(value "$fig")
	if isnum "$v" || { [ "$v" = n/a ] && [ -n "$(reason "$fig")" ]; }; then
		ok "$fig: $v"
	else
		not_ok "$fig: value '$v'"
	fi
done

check "markdown table written" grep -q '^| imgcache cold seq, file origin | ' "$T/bench.md"
if awk -v t="$T/" 'index($2, t) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
	not_ok "no mount left under $T: $(awk -v t="$T/" 'index($2, t) == 1 { print $2 }' /proc/mounts)"
else
	ok "no mount left under $T"
fi
left=$(grep -ls "$T/imgcache-bench[.]" /proc/[0-9]*/cmdline 2>/dev/null |
	grep -v "^/proc/$$/" | head -n 3 | tr '\n' ' ')
assert_eq "no process of the bench left" "" "$left"
# shellcheck disable=SC2012 # a listing for a message
assert_eq "bench removed its temporary directory" "" \
	"$(ls -d "$T"/imgcache-bench.* 2>/dev/null | head -n 1)"
