#!/bin/sh
# t-storm-smoke: `make bench-storm` in smoke mode (16 MiB image, ~1 MiB
# synthetic trace, N = 1 and 4, a 2 s origin_timeout) exits 0, every replayed
# read equals the origin's bytes, prints every figure (a number, or n/a with
# a reason), and leaves no mount, process or temporary directory behind.
# No performance assertions: benchmarks are not timed tests.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
require_nginx
for x in "$top_builddir/test/bench/replay" "$top_builddir/test/bench/lat"; do
	[ -x "$x" ] || fail "$x is not built (run make check)"
done
command -v bash >/dev/null 2>&1 || skip "bash not installed"

rc=0
STORM_SMOKE=1 STORM_DIR=$T STORM_TIMEOUT=60 \
	timeout -k 5 200 bash "$top_srcdir/test/bench/storm.sh" "$top_builddir" \
	>"$T/out" 2>"$T/err" || rc=$?
assert_eq "bench-storm smoke exits 0" 0 "$rc"
[ "$rc" = 0 ] || show_log "$T/err"
sed 's/^/# /' "$T/out"
check "bytes exact" grep -q '^bytes exact: yes' "$T/out"
check "table has its column header" \
	grep -Eq '^figure +value +unit +reference +ratio +target$' "$T/out"

value() {
	awk -v f="$1  " 'index($0, f) == 1 {
		rest = substr($0, length(f) + 1); split(rest, a, " "); print a[1]; exit }' \
		"$T/out"
}
reason() {
	awk -v f="  $1: " 'index($0, f) == 1 { print substr($0, length(f) + 1); exit }' \
		"$T/out"
}
isnum() {
	case $1 in '' | *[!0-9.]* | *.*.*) return 1 ;; esac
}
for fig in "storm N=1 replay time, median" "storm N=1 replay time, p99" \
	"storm N=4 replay time, median" "storm N=4 replay time, p99" \
	"storm N=1 origin bytes / working set" \
	"storm N=4 origin bytes / working set" "storm N=4 origin bytes / N=1's" \
	"storm N=1 readahead read / fetched" \
	"first-touch 4K, idle, p50 of 8" "first-touch 4K, idle, p99 of 8" \
	"first-touch 4K, during pre-warm, p50" \
	"first-touch 4K, during pre-warm, p99" \
	"first-touch 4K, one origin hung, p50" \
	"first-touch 4K, one origin hung, p99" \
	"hung origin: slowest reader's EIO" "hung origin: readers with EIO"; do
	v=$(value "$fig")
	if isnum "$v"; then
		ok "$fig: $v"
	elif [ "$v" = n/a ] && [ -n "$(reason "$fig")" ]; then
		ok "$fig: n/a ($(reason "$fig"))"
	else
		not_ok "$fig: value '$v'"
	fi
done
# The hung origin's readers all got EIO (the figure, not its time).
assert_eq "every reader of the hung origin got EIO" 4 \
	"$(value "hung origin: readers with EIO")"
if awk -v t="$T/" 'index($2, t) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
	not_ok "no mount left under $T"
else
	ok "no mount left under $T"
fi
# shellcheck disable=SC2012 # a listing for a message
assert_eq "bench-storm removed its temporary directory" "" \
	"$(ls -d "$T"/imgcache-storm.* 2>/dev/null | head -n 1)"
