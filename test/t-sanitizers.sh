#!/bin/sh
# t-sanitizers: the whole suite again, built with --enable-sanitizers
# (AddressSanitizer + UndefinedBehaviorSanitizer, halting on the first
# error), in a fresh copy of the distribution; and the unit tests under
# valgrind.  Skipped inside that nested run (configure
# --disable-sanitizer-pass).  The copy is made from the build tree
# (make distdir) into $T, so a read-only source tree (distcheck) and a
# separate build tree are fine; the nested make check runs what TESTS
# names when the outer make was given TESTS (MAKEFLAGS carries it).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
[ "${SANITIZER_PASS:-yes}" = yes ] || skip "sanitizer pass disabled here"

# --- unit tests under valgrind (no fork: Check would hide child errors)
if command -v valgrind >/dev/null 2>&1; then
	for u in "$top_builddir"/test/check_*; do
		case $u in *.c | *.o | *.log | *.trs) continue ;; esac
		[ -x "$u" ] || continue
		rc=0
		CK_FORK=no bounded valgrind -q --error-exitcode=99 \
			--leak-check=full --errors-for-leak-kinds=definite \
			"$u" >"$T/vg.out" 2>&1 || rc=$?
		if [ "$rc" -eq 0 ]; then
			ok "valgrind clean: $(basename "$u")"
		elif [ "$rc" -eq 77 ]; then # skipped itself (check_store: no mount)
			note "valgrind: $(basename "$u") skipped"
		else
			not_ok "valgrind: $(basename "$u")"
			show_log "$T/vg.out" 60
		fi
	done
else
	not_ok "valgrind not installed (./bootstrap installs it)"
fi

# --- the whole suite under ASan + UBSan
command -v gcc >/dev/null 2>&1 || fail "gcc missing"
mkdir -p "$T/san"
(cd "$top_builddir" && make -s distdir distdir="$T/san/src") >"$T/distdir.log" 2>&1 ||
	{ show_log "$T/distdir.log"; fail "make distdir failed"; }
cd "$T/san/src" || fail "no distdir"
if ! ./configure -q --enable-sanitizers --disable-sanitizer-pass \
	>"$T/configure.log" 2>&1; then
	show_log "$T/configure.log"
	fail "configure --enable-sanitizers failed"
fi
if ! make -s -j2 >"$T/build.log" 2>&1; then
	show_log "$T/build.log"
	fail "sanitizer build failed"
fi
ok "built with -fsanitize=address,undefined"
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
if make -s check >"$T/check.log" 2>&1; then
	ok "sanitized suite: $(grep -E '^# (TOTAL|PASS|FAIL)' "$T/check.log" | tr '\n' ' ')"
else
	grep -E '^(FAIL|ERROR):' "$T/check.log" >&2
	for f in $(grep -E '^(FAIL|ERROR):' "$T/check.log" | awk '{print $2}'); do
		show_log "$f.log" 40
	done
	not_ok "sanitized suite failed: $(grep -E '^# (TOTAL|PASS|FAIL)' "$T/check.log" | tr '\n' ' ')"
fi
