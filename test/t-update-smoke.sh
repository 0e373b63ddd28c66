#!/bin/sh
# t-update-smoke: `make bench-update` in smoke mode (a 48 MiB ext4 image of
# real files as qcow2, v2 with files rewritten in place and added, a
# template built from v1 with a package added, one cost round each way, a
# 2 GiB sparse template) exits 0, every byte read through the mount equals
# the origin's (replay -c, cmp), prints every figure (a number, or n/a with
# a reason), and leaves no mount, process or temporary directory behind.
# No performance assertions: benchmarks are not timed tests.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
require_nginx
[ -x "$top_builddir/test/bench/replay" ] ||
	fail "$top_builddir/test/bench/replay is not built (run make check)"
for c in bash mkfs.ext4 debugfs qemu-img curl; do
	command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
	command -v "$c" >/dev/null 2>&1 || skip "$c not installed"
done

rc=0
BENCH_UPDATE_SMOKE=1 BENCH_UPDATE_DIR=$T BENCH_UPDATE_TIMEOUT=60 \
	timeout -k 5 300 bash "$top_srcdir/test/bench/update.sh" "$top_builddir" \
	>"$T/out" 2>"$T/err" || rc=$?
assert_eq "bench-update smoke exits 0" 0 "$rc"
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
for fig in "blocks of v2 also in v1 (qcow2): same offset" \
	"blocks of v2 also in v1 (qcow2): other offset only" \
	"blocks of b also in v1 (qcow2): other offset only" \
	"blocks of c (fresh mkfs) also in v1 (qcow2): other offset only" \
	"v1 working set, cold: origin bytes" \
	"v2 working set after v1's: origin bytes" \
	"v2 working set: bytes from local copies" \
	"b working set after v1, v2: origin bytes" \
	"b working set: bytes from local copies" \
	"cold seq read, manifest (median of 1)" \
	"daemon CPU per GiB, manifest" \
	"2 GiB template, manifest: daemon VmHWM" \
	"2 GiB template: manifest on disk"; do
	v=$(value "$fig")
	if isnum "$v"; then
		ok "$fig: $v"
	elif [ "$v" = n/a ] && [ -n "$(reason "$fig")" ]; then
		ok "$fig: n/a ($(reason "$fig"))"
	else
		not_ok "$fig: value '$v'"
	fi
done
if awk -v t="$T/" 'index($2, t) == 1 { f = 1 } END { exit !f }' /proc/mounts; then
	not_ok "no mount left under $T"
else
	ok "no mount left under $T"
fi
# shellcheck disable=SC2012 # a listing for a message
assert_eq "bench-update removed its temporary directory" "" \
	"$(ls -d "$T"/imgcache-update.* 2>/dev/null | head -n 1)"
