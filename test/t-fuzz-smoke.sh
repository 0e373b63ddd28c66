#!/bin/sh
# t-fuzz-smoke: build the libFuzzer harnesses of test/fuzz/ with `make
# fuzz-build` (into the work directory) and run each of FUZZ_HARNESSES
# (default all) for FUZZ_SECONDS (default 10; `make fuzz` runs it so with 60) from
# a copy of its seed corpus, all at once.  A crash, leak, sanitizer report,
# failed invariant or an input taking over 10 s fails the test; the log
# tail and the saved input are shown.  Long runs: see test/fuzz/README.
# SKIP (77) without clang or its libFuzzer runtime (libclang-rt-14-dev).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"

CLANG=${CLANG:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
HARNESSES=${FUZZ_HARNESSES:-conf profile qcow2 http manifest}

command -v "$CLANG" >/dev/null 2>&1 || skip "$CLANG not installed"
command -v make >/dev/null 2>&1 || skip "make not installed"
# The runtime ships apart from the compiler: try to link a fuzzer.
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)%s\n' \
	'{ (void)d; (void)n; return 0; }' >"$T/probe.c"
"$CLANG" -fsanitize=fuzzer,address,undefined -o "$T/probe" "$T/probe.c" \
	>"$T/probe.log" 2>&1 || skip "no libFuzzer runtime for $CLANG"

# Our own make: not the jobserver of a `make check` that may run us.
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout 120 make -s -j4 \
	-C "$top_builddir" fuzz-build CLANG="$CLANG" FUZZ_DIR="$T/bin" \
	>"$T/build.log" 2>&1; then
	ok "make fuzz builds the harnesses"
else
	show_log "$T/build.log"
	fail "make fuzz"
fi

# start NAME: run one harness in the background; its pid in $T/NAME.pid.
start() {
	mkdir -p "$T/art/$1"
	cp -R "$top_srcdir/test/fuzz/corpus/$1" "$T/corpus-$1"
	timeout -k 5 $((FUZZ_SECONDS + 50)) "$T/bin/fuzz_$1" \
		-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$T/art/$1/" "$T/corpus-$1" >"$T/$1.log" 2>&1 &
	echo $! >"$T/$1.pid"
}

# finish NAME: wait for it; report its last status line or its failure.
finish() {
	_rc=0
	wait "$(cat "$T/$1.pid")" || _rc=$?
	if [ "$_rc" = 0 ]; then
		ok "fuzz_$1: no crash in ${FUZZ_SECONDS}s ($(grep -o 'cov: [0-9]* ft: [0-9]*' "$T/$1.log" | tail -n 1))"
		return
	fi
	not_ok "fuzz_$1 failed (exit $_rc)"
	show_log "$T/$1.log" 30
	for _a in "$T/art/$1"/*; do
		[ -e "$_a" ] && echo "# input: $(basename "$_a") ($(od -An -c "$_a" | head -n 4 | tr -s ' '))" >&2
	done
}

for h in $HARNESSES; do
	start "$h"
done
for h in $HARNESSES; do
	finish "$h"
done
