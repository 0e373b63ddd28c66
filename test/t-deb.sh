#!/bin/sh
# t-deb: the Debian package, installed on this machine and removed again.
#  a. `make deb` builds the .deb from this tree's release tarball (in $T);
#     lintian finds no error or warning in it or in the source package.
#  b. dpkg -i installs the daemon and tools in /usr/sbin, the man pages,
#     /etc/imgcache/imgcache.conf as a conffile whose every line is a
#     comment, the systemd unit (not enabled, nothing mounted on
#     /var/lib/imgcache), /var/cache/imgcache root:root 0700.
#  c. The installed daemon mounts the shipped config (no template) and a
#     test config whose template is a file origin, with the cache in
#     /var/cache/imgcache: bytes equal the origin; the installed
#     imgcache-report lists the template.
#  d. dpkg --purge leaves none of the package's paths behind that did not
#     exist before (the cache the daemon filled included), nor any state of
#     dpkg or deb-systemd-helper.
# The machine is left as found, also when the test fails: the package is
# purged by the exit trap.  It refuses (SKIP) to run where an imgcache
# package or any of its paths is already there, and takes a lock so that
# two runs (two trees) do not install at once.  Needs root.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root (dpkg -i)"
for _c in dpkg-buildpackage dh lintian; do
	command -v "$_c" >/dev/null 2>&1 ||
		skip "$_c not installed (./bootstrap installs it)"
done
require_fuse
PKG=imgcache
VERSION=$(dpkg-parsechangelog -l "$top_srcdir/debian/changelog" -S Version) ||
	fail "no version in $top_srcdir/debian/changelog"

# ---------------------------------------------------------------- a. build
# A make of its own: not make check's jobserver, variables or TESTS, nor
# the test environment's top_srcdir and sbindir.
t0=$(now_ms)
mkdir -p "$T/out"
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u top_srcdir -u top_builddir \
	-u sbindir -u SANITIZER_PASS DEB_BUILD_OPTIONS="nocheck noddebs parallel=2" \
	timeout -k 5 600 make -C "$top_builddir" deb DEB_WORKDIR="$T/build" \
	DEB_OUTDIR="$T/out" >"$T/build.log" 2>&1; then
	show_log "$T/build.log" 60
	fail "make deb"
fi
DEB=$(ls "$T/out/${PKG}_${VERSION}_"*.deb)
ok "make deb built $(basename "$DEB") in $((($(now_ms) - t0) / 1000)) s"
# The source package too, for lintian's checks of debian/ itself.
mkdir -p "$T/src"
tar -C "$T/src" -xzf "$top_builddir/$PKG-$VERSION.tar.gz"
(cd "$T/src" && dpkg-source -b "$PKG-$VERSION" >"$T/source.log" 2>&1) ||
	fail "dpkg-source -b: $(tail -n 3 "$T/source.log")"
# lintian takes half a minute: it runs while the package is tried out.
# A simple command, not a function: $! is timeout's pid, so that the exit
# trap's TERM reaches lintian at once.
timeout -k 5 "$T_TIMEOUT" lintian --fail-on error,warning --display-info \
	"$T/src/${PKG}_$VERSION.dsc" "$DEB" >"$T/lintian.log" 2>&1 &
LINTIAN_PID=$!
_register "$LINTIAN_PID" -

# ---------------------------------------------------------------- b. install
# One run at a time on this machine: a lock on dpkg's directory (flock(2),
# which dpkg and apt do not use: they take fcntl locks on files in it), so
# that nothing is left behind in /run.
exec 8</var/lib/dpkg
flock -w 300 8 || fail "another t-deb run held the lock for 300 s"
if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -qv 'not-installed'; then
	skip "package $PKG is on this machine ($(dpkg-query -W -f='${Status}' "$PKG")): not touching it"
fi
dpkg-deb -c "$DEB" | awk '{ p = $6; sub(/^\./, "", p); sub(/\/$/, "", p);
	if (p != "") print p }' >"$T/paths"
: >"$T/existed"
while read -r p; do
	if [ -e "$p" ] || [ -L "$p" ]; then
		echo "$p" >>"$T/existed"
		[ -d "$p" ] ||
			skip "$p exists (not from the package): not replacing it"
	fi
done <"$T/paths"
for d in /etc/imgcache /var/cache/imgcache /var/lib/imgcache; do
	! grep -qx "$d" "$T/existed" || skip "$d exists: not taking it over"
done

# dpkg_retry ARGS...: dpkg ARGS, waiting (120 s at most) while another
# process (an apt-get elsewhere on the machine) holds dpkg's lock.
dpkg_retry() {
	_dr_n=120
	while :; do
		_dr_rc=0
		LC_ALL=C timeout -k 5 300 dpkg "$@" >"$T/dpkg.log" 2>&1 ||
			_dr_rc=$?
		if [ "$_dr_rc" = 0 ] || [ "$_dr_n" -le 0 ] ||
			! grep -q 'lock was locked by another process' "$T/dpkg.log"; then
			break
		fi
		_dr_n=$((_dr_n - 1))
		sleep 1
	done
	cat "$T/dpkg.log" >>"$T/dpkg-all.log"
	return "$_dr_rc"
}

# The exit trap's undo: purge the package if it is (even half) installed.
purge_ours() {
	dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -qv not-installed ||
		return 0
	dpkg_retry --purge "$PKG" ||
		echo "# t-deb: dpkg --purge $PKG failed: $(tail -n 3 "$T/dpkg.log")" >&2
}
at_cleanup purge_ours
dpkg_retry -i "$DEB" || fail "dpkg -i: $(tail -n 5 "$T/dpkg.log")"
ok "dpkg -i $(basename "$DEB")"
dpkg -L "$PKG" >"$T/listed"

for p in imgcache imgcache-pin imgcache-report imgcache-scrub; do
	check "/usr/sbin/$p installed" test -x "/usr/sbin/$p"
done
for m in man8/imgcache.8 man5/imgcache.conf.5 man8/imgcache-pin.8 \
	man8/imgcache-report.8 man8/imgcache-scrub.8; do
	check "man page $m" test -s "/usr/share/man/$m.gz"
done
CONF=/etc/imgcache/imgcache.conf
check "$CONF is a conffile" sh -c \
	"dpkg-query -W -f='\${Conffiles}' $PKG | grep -q '^ $CONF '"
assert_eq "every line of $CONF is a comment or blank" "" \
	"$(grep -v -e '^#' -e '^[[:space:]]*$' "$CONF" || true)"
UNIT=/lib/systemd/system/imgcache.service
check "the unit is installed" test -s "$UNIT"
check "the unit starts /usr/sbin/imgcache with $CONF" \
	grep -q "^ExecStart=/usr/sbin/imgcache -f $CONF /var/lib/imgcache " "$UNIT"
assert_eq "the unit is not enabled (no wants/ link)" "" \
	"$(find /etc/systemd/system -name imgcache.service 2>/dev/null)"
check "nothing mounted on /var/lib/imgcache" sh -c "! grep -q ' /var/lib/imgcache ' /proc/mounts"
check "the unit's mount point /var/lib/imgcache exists" test -d /var/lib/imgcache
assert_eq "/var/cache/imgcache is root:root 0700" "root:root 700" \
	"$(stat -c '%U:%G %a' /var/cache/imgcache)"

# ---------------------------------------------------------------- c. run
# The installed daemon, on mount points of this test, with the package's
# cache directory (its purge must take what the daemon put there).
IMGCACHE=/usr/sbin/imgcache
start_imgcache "$CONF" "$T/mnt0" -o allow_other
assert_eq "the shipped config serves no template" "" "$(ls -A "$T/mnt0")"
stop_imgcache "$T/mnt0"

make_file "$T/src/disk.img" 4
printf '[global]\ncache_dir = /var/cache/imgcache\nblock_size = 64K\n' >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img" >>"$T/conf"
start_imgcache "$T/conf" "$T/mnt" -o allow_other
assert_same "a read through the installed daemon equals the origin" \
	"$T/mnt/disk.img" "$T/src/disk.img"
if bounded /usr/sbin/imgcache-report --config "$T/conf" >"$T/report" 2>&1; then
	check "the installed imgcache-report lists disk.img" grep -q disk.img "$T/report"
else
	not_ok "imgcache-report: $(head -n 3 "$T/report")"
fi
stop_imgcache "$T/mnt"
check "the daemon filled /var/cache/imgcache" test -s /var/cache/imgcache/index.db

# ---------------------------------------------------------------- d. purge
dpkg_retry --purge "$PKG" || fail "dpkg --purge: $(tail -n 5 "$T/dpkg.log")"
ok "dpkg --purge $PKG"
assert_eq "dpkg knows no $PKG" "" \
	"$(dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -v not-installed || true)"
: >"$T/left"
while read -r p; do
	[ "$p" != /. ] || continue
	grep -qx "$p" "$T/existed" && continue
	if [ -e "$p" ] || [ -L "$p" ]; then echo "$p" >>"$T/left"; fi
done <"$T/listed"
assert_eq "no path of the package left" "" "$(cat "$T/left")"
for p in /etc/imgcache /var/cache/imgcache /var/lib/imgcache; do
	check "$p removed" test ! -e "$p"
done
assert_eq "no dpkg or deb-systemd-helper state left" "" \
	"$(ls -d /var/lib/dpkg/info/$PKG.* /var/lib/systemd/deb-systemd-*/*imgcache* 2>/dev/null || true)"

_lrc=0
wait "$LINTIAN_PID" || _lrc=$?
_unregister "$LINTIAN_PID"
grep -v 'running with root privileges' "$T/lintian.log" |
	sed 's/^/# lintian: /' || true
if [ "$_lrc" = 0 ]; then
	ok "lintian: no error or warning (overrides: debian/imgcache.lintian-overrides)"
else
	not_ok "lintian: no error or warning (status $_lrc)"
fi
note "whole test $((($(now_ms) - t0) / 1000)) s"
