#!/bin/sh
# t-perms: who may touch what.
#  a. cache_dir (or its data/) group- or world-writable, owned by another
#     user, or a symlink: the daemon exits 1 before mounting, with one log
#     line naming the directory, and creates nothing through a symlink.
#  b. a symlink planted as a data file (data/NAME.GEN), as index.db, -wal or
#     -shm is not followed: its target is unchanged.
#  c. owner = root, group = GROUP, mode = 0440, -o allow_other: nobody
#     without GROUP gets EACCES, with GROUP (setpriv --groups) reads the
#     origin's bytes; no one can write, truncate, chmod, create or remove;
#     mode = 0644 is refused at config load (exit 2).
#  d. the control socket (when the daemon has one) is 0600 and refuses an
#     unprivileged peer even when the file mode would let it connect.
#  e. an origin URL with user:secret@ and ?token=secret, a netrc password
#     and a redirect to a URL with credentials: "secret" never appears in
#     the daemon's debug log, the xattrs, imgcache-report's outputs, the
#     index's events or the errors of failing reads.
# Needs root (chown, setpriv).
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
[ "$(id -u)" = 0 ] || skip "needs root (chown, setpriv)"
command -v setpriv >/dev/null 2>&1 || skip "setpriv not installed"
require_local_http
getent passwd 65534 >/dev/null 2>&1 || skip "no uid 65534 (nobody)"
# As nobody: the path to the mount must be searchable.
chmod 0711 "$T"
NOBODY_G="setpriv --reuid=65534 --regid=65534"
NOBODY="$NOBODY_G --clear-groups"
REPORT=$top_builddir/tools/imgcache-report

make_file "$T/src/a.img" 4

# conf_at CACHE_DIR: a config with template a.img.
conf_at() {
	printf '[global]\ncache_dir = %s\nblock_size = 64K\norigin_timeout = 3s\n' "$1"
	printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img"
}

# refused DESC CONF STATUS PATTERN: imgcache exits STATUS without mounting,
# saying why in one line that matches PATTERN (grep -E).
n_refused=0
refused() {
	n_refused=$((n_refused + 1))
	_mnt=$T/rmnt
	_log=$T/refused.$n_refused.log
	mkdir -p "$_mnt"
	_rc=0
	timeout -k 2 10 "$IMGCACHE" -f "$2" "$_mnt" >"$_log" 2>&1 || _rc=$?
	if is_mounted "$_mnt"; then
		fusermount3 -u "$_mnt" || true
		not_ok "$1: the daemon mounted"
		return
	fi
	assert_eq "$1: exit status" "$3" "$_rc"
	if grep -Eq "$4" "$_log"; then
		ok "$1: says why ($(grep -E "$4" "$_log" | head -n 1))"
	else
		not_ok "$1: no line matching '$4' in: $(head -n 3 "$_log")"
	fi
	assert_eq "$1: one line of output" 1 "$(wc -l <"$_log")"
}

# --- a. unsafe cache directories
C=$T/cache-a
mkdir -p "$C/data"
chmod 0700 "$C" "$C/data"
conf_at "$C" >"$T/conf-a"
chmod 0770 "$C"
refused "cache_dir group-writable (0770)" "$T/conf-a" 1 \
	"$C.*(group|world)-writable"
chmod 0703 "$C"
refused "cache_dir world-writable (0703)" "$T/conf-a" 1 \
	"$C.*(group|world)-writable"
chmod 0700 "$C"
chmod 0770 "$C/data"
refused "cache_dir/data group-writable" "$T/conf-a" 1 \
	"$C/data.*(group|world)-writable"
chmod 0700 "$C/data"
chown 65534 "$C"
refused "cache_dir owned by nobody" "$T/conf-a" 1 "$C.*owned by"
chown 0 "$C"
chown 65534 "$C/data"
refused "cache_dir/data owned by nobody" "$T/conf-a" 1 "$C/data.*owned by"
chown 0 "$C/data"
mkdir -p "$T/elsewhere"
chmod 0700 "$T/elsewhere"
ln -s "$T/elsewhere" "$T/cache-link"
conf_at "$T/cache-link" >"$T/conf-link"
refused "cache_dir is a symlink" "$T/conf-link" 1 "cache-link.*symbolic link"
rm -rf "$C/data"
ln -s "$T/elsewhere" "$C/data"
refused "cache_dir/data is a symlink" "$T/conf-a" 1 "$C/data.*symbolic link"
rm "$C/data"
check "nothing was created through the symlinks" \
	test -z "$(ls -A "$T/elsewhere")"

# --- b. symlinks planted in a cache
# try_start CONF MNT: like start_imgcache, but the daemon may refuse to
# start: 0 when mounted, 1 when it exited (status in TRY_RC).
try_start() {
	_nstart=$((_nstart + 1))
	IMGCACHE_LOG=$T/imgcache.$_nstart.log
	mkdir -p "$2"
	"$IMGCACHE" -f "$1" "$2" >"$IMGCACHE_LOG" 2>&1 &
	IMGCACHE_PID=$!
	_register "$IMGCACHE_PID" "$2"
	TRY_RC=
	_ts_n=200
	while [ "$_ts_n" -gt 0 ]; do
		if is_mounted "$2" && timeout -k 2 10 mountpoint -q "$2"; then
			return 0
		fi
		if ! _pid_alive "$IMGCACHE_PID"; then
			TRY_RC=0
			wait "$IMGCACHE_PID" || TRY_RC=$?
			_unregister "$IMGCACHE_PID"
			return 1
		fi
		_ts_n=$((_ts_n - 1))
		sleep 0.05
	done
	fail "imgcache neither mounted nor exited within 10 s"
}
# planted WHAT: start on the planted cache, read a.img if it is served,
# stop; then the victim must be unchanged.
planted() {
	if try_start "$T/conf-b" "$MNT"; then
		_rc=0
		bounded cat "$MNT/a.img" >"$T/b.read" 2>"$T/b.err" || _rc=$?
		if [ "$_rc" = 0 ]; then
			assert_same "$1: reads give the origin's bytes" "$T/b.read" \
				"$T/src/a.img"
		else
			note "$1: reads fail: $(head -n 1 "$T/b.err")"
		fi
		stop_imgcache "$MNT"
		note "$1: the daemon started; its log: $(grep -i -e warn -e err "$IMGCACHE_LOG" | head -n 2 | tr '\n' ' ')"
	else
		note "$1: the daemon refused to start (status $TRY_RC): $(head -n 2 "$IMGCACHE_LOG" | tr '\n' ' ')"
	fi
	assert_same "$1: the symlink's target is unchanged" "$T/victim" \
		"$T/victim.orig"
	check "$1: the target is still a regular file of 1 MiB" \
		test "$(stat -c %F:%s "$T/victim")" = "regular file:1048576"
}
fresh_cache() {
	rm -rf "$CACHE"
	mkdir -p "$CACHE/data"
	chmod 0700 "$CACHE" "$CACHE/data"
}
CACHE=$T/cache-b
global_section >"$T/conf-b"
printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img" >>"$T/conf-b"
MNT=$T/mnt
start_imgcache "$T/conf-b" "$MNT"
bounded cat "$MNT/a.img" >/dev/null
stop_imgcache "$MNT"
cp "$CACHE/index.db" "$T/victim.db" # a valid index, for later
DATA=$(ls "$CACHE"/data/a.img.*)
check "one data file after a first run ($DATA)" test -f "$DATA"
make_file "$T/victim" 1
cp "$T/victim" "$T/victim.orig"
rm "$DATA"
ln -s "$T/victim" "$DATA"
planted "a symlink in place of an existing data file"
check "... and the daemon names the data file in its log" \
	grep -q -e "$DATA" "$IMGCACHE_LOG"
# Where a data file is yet to be created (a fresh cache).
fresh_cache
ln -s "$T/victim" "$CACHE/data/a.img.1"
planted "a symlink where a new data file goes"
# index.db as a symlink to a file that is not a database, then to a valid
# index elsewhere: SQLite must not open (and write) it through the link.
fresh_cache
ln -s "$T/victim" "$CACHE/index.db"
planted "index.db planted as a symlink to a non-database"
fresh_cache
ln -s "$T/victim.db" "$CACHE/index.db"
cp "$T/victim.db" "$T/victim.db.orig"
planted "index.db planted as a symlink to a valid index"
assert_same "... that valid index (the symlink's target) is unchanged" \
	"$T/victim.db" "$T/victim.db.orig"
# The WAL and shared-memory files as symlinks.
fresh_cache
ln -s "$T/victim" "$CACHE/index.db-wal"
planted "index.db-wal planted as a symlink"
fresh_cache
ln -s "$T/victim" "$CACHE/index.db-shm"
planted "index.db-shm planted as a symlink"

# --- c. owner, group, mode; allow_other; the kernel enforces them
if getent group disk >/dev/null 2>&1; then
	GRP=disk
	GID=$(getent group disk | cut -d: -f3)
else
	GRP=4242
	GID=4242
fi
CACHE=$T/cache-c
{
	global_section
	printf 'owner = root\ngroup = %s\nmode = 0440\n' "$GRP"
	printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img"
} >"$T/conf-c"
start_imgcache "$T/conf-c" "$MNT" -o allow_other
assert_eq "a.img: owner, group and mode from the config" "0:$GID:440" \
	"$(stat -c %u:%g:%a "$MNT/a.img")"
rc=0
$NOBODY cat "$MNT/a.img" >/dev/null 2>"$T/c.err" || rc=$?
if [ "$rc" != 0 ] && grep -q 'Permission denied' "$T/c.err"; then
	ok "nobody without group $GRP: EACCES"
else
	not_ok "nobody without group $GRP: expected EACCES, got status $rc: $(cat "$T/c.err")"
fi
rc=0
# shellcheck disable=SC2086 # $NOBODY_G: a command and its options
bounded $NOBODY_G --groups="$GID" cat "$MNT/a.img" >"$T/c.read" 2>"$T/c.err" ||
	rc=$?
assert_eq "nobody with group $GRP reads a.img" 0 "$rc"
assert_same "... and gets the origin's bytes" "$T/c.read" "$T/src/a.img"
# writes, as the group member and as root
cp "$T/src/a.img" "$T/a.before"
write_fails() { # WHO CMD...: CMD must fail with EROFS, EACCES or EPERM
	_who=$1
	shift
	_rc=0
	"$@" >"$T/w.err" 2>&1 || _rc=$?
	if [ "$_rc" != 0 ] &&
		grep -Eq 'Read-only file system|Permission denied|Operation not permitted' "$T/w.err"; then
		ok "$_who cannot: $* ($(sed 's/.*: //' "$T/w.err" | head -n 1))"
	else
		not_ok "$_who: '$*' should fail (status $_rc: $(head -n 1 "$T/w.err"))"
	fi
}
# shellcheck disable=SC2086 # $as: a command prefix, or nothing for root
for who in group root; do
	if [ "$who" = group ]; then
		as="$NOBODY_G --groups=$GID"
	else
		as=
	fi
	write_fails "$who" $as sh -c "echo x >>'$MNT/a.img'"
	write_fails "$who" $as sh -c "echo x >'$MNT/a.img'"
	write_fails "$who" $as truncate -s 0 "$MNT/a.img"
	write_fails "$who" $as chmod 0666 "$MNT/a.img"
	write_fails "$who" $as touch "$MNT/a.img"
	write_fails "$who" $as touch "$MNT/new.img"
	write_fails "$who" $as rm -f "$MNT/a.img"
	write_fails "$who" $as mkdir "$MNT/d"
	write_fails "$who" $as mv "$MNT/a.img" "$MNT/b.img"
	write_fails "$who" $as setfattr -n user.x -v 1 "$MNT/a.img"
done
assert_same "the origin is unchanged" "$T/src/a.img" "$T/a.before"
check "a.img still served" cmp -s "$MNT/a.img" "$T/src/a.img"
stop_imgcache "$MNT"
sed 's/^mode = 0440$/mode = 0644/' "$T/conf-c" >"$T/conf-c644"
refused "mode = 0644 in the config" "$T/conf-c644" 2 "conf-c644:[0-9]+:.*mode"
sed 's/^mode = 0440$/mode = 0666/' "$T/conf-c" >"$T/conf-c666"
refused "mode = 0666 in the config" "$T/conf-c666" 2 "conf-c666:[0-9]+:.*mode"
sed 's/^group = .*$/group = no-such-group-here/' "$T/conf-c" >"$T/conf-cgrp"
refused "an unknown group" "$T/conf-cgrp" 2 "no-such-group-here"

# --- d. the control socket
CACHE=$T/cache-d
global_section >"$T/conf-d"
printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img" >>"$T/conf-d"
start_imgcache "$T/conf-d" "$MNT" -o allow_other
SOCK=$CACHE/ctl.sock
if wait_for 3 test -S "$SOCK"; then
	assert_eq "ctl.sock: owner and mode" "0:600" "$(stat -c %u:%a "$SOCK")"
	assert_eq "cache_dir: mode" 700 "$(stat -c %a "$CACHE")"
	PY=/usr/bin/python3
	if [ -x "$PY" ]; then
		cat >"$T/ctl.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.strerror)
    sys.exit(0)
out = b""
try:
    s.sendall(b"list\n")
except OSError as e:
    out += b"(send: " + str(e).encode() + b") "
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
        last = out.rstrip(b"\n").split(b"\n")[-1]
        if out.endswith(b"\n") and (last == b"ok" or last.startswith(b"error")):
            break
except OSError as e:
    out += b" (" + str(e).encode() + b")"
print(out.decode(errors="replace").replace("\t", " ").strip())
EOF
		chmod 0644 "$T/ctl.py"
		out=$($NOBODY "$PY" "$T/ctl.py" "$SOCK" 2>&1 || true)
		case $out in
		*"Permission denied"*) ok "nobody cannot connect to the 0600 socket" ;;
		*) not_ok "nobody connecting to the 0600 socket: $out" ;;
		esac
		# Defence in depth: with the directory and the socket opened up,
		# the peer credentials check must still refuse.
		chmod 0711 "$CACHE"
		chmod 0666 "$SOCK"
		out=$($NOBODY "$PY" "$T/ctl.py" "$SOCK" 2>&1 || true)
		chmod 0600 "$SOCK"
		chmod 0700 "$CACHE"
		case $out in
		*"permission denied"*) ok "the daemon refuses an unprivileged peer ($out)" ;;
		*) not_ok "an unprivileged peer through a 0666 socket got: $out" ;;
		esac
		check "the refusal is logged with the uid" \
			grep -q 'refused a connection from uid 65534' "$IMGCACHE_LOG"
		out=$(bounded "$PY" "$T/ctl.py" "$SOCK" 2>&1 || true)
		case $out in
		*ok*) ok "root is served by the socket" ;;
		*) not_ok "root's list request got: $out" ;;
		esac
	else
		note "no /usr/bin/python3 for the unprivileged peer: socket peer checks skipped"
	fi
else
	note "SKIP: the daemon has no control socket ($SOCK): part d not run"
fi
stop_imgcache "$MNT"

# --- e. secrets in URLs and netrc never leak
CACHE=$T/cache-e
make_file "$T/data" 16
SRVLOG=$T/srv.log
PORT=$(free_port)
DEAD=$(free_port)
start_faultsrv srv "$T/data" --port "$PORT" \
	--redirect-to "http://u:redirsecret@127.0.0.1:$PORT" # logs to $SRVLOG
printf 'machine 127.0.0.1 login nuser password netrcsecret\n' >"$T/netrc"
chmod 0600 "$T/netrc"
U=http://user:secret@127.0.0.1:$PORT
{
	global_section
	printf 'connect_timeout = 1s\nrevalidate = 0\n'
	printf '\n[template s.img]\norigin = %s/ok/s.img?token=secret\n' "$U"
	printf 'mirror = http://m:mirrorsecret@127.0.0.1:%s/ok/s.img?token=secret\n' "$DEAD"
	printf '\n[template n.img]\norigin = http://127.0.0.1:%s/ok/n.img?sig=secret\n' "$PORT"
	printf 'netrc = %s\n' "$T/netrc"
	printf '\n[template r.img]\norigin = %s/redirect/r.img?token=secret\n' "$U"
	printf '\n[template g.img]\norigin = %s/503/g.img?token=secret\n' "$U"
	printf '\n[template x.img]\norigin = %s/404/x.img?token=secret\n' "$U"
} >"$T/conf-e"
IMGCACHE_DEBUG=1 start_imgcache "$T/conf-e" "$MNT"
ELOG=$IMGCACHE_LOG
: >"$T/e.errs"
for f in s.img n.img r.img; do
	if [ -e "$MNT/$f" ]; then
		bounded dd if="$MNT/$f" of="$T/e.$f" bs=64K count=1 iflag=direct \
			status=none 2>>"$T/e.errs" || true
		extract "$T/data" 0 65536 "$T/e.want"
		assert_same "$f reads the origin's bytes" "$T/e.$f" "$T/e.want"
	else
		not_ok "$f is not served"
	fi
done
check "credentials were sent to the origin (Authorization seen)" \
	grep -q ' auth$' "$SRVLOG"
for f in g.img x.img; do # left out at start (503, 404) unless they appear
	if [ -e "$MNT/$f" ]; then
		bounded cat "$MNT/$f" >/dev/null 2>>"$T/e.errs" || true
	fi
done
# Failing reads: the origin goes away.
stop_faultsrv srv
for f in s.img n.img r.img; do
	rc=0
	bounded dd if="$MNT/$f" of=/dev/null bs=64K skip=200 count=1 \
		iflag=direct status=none 2>>"$T/e.errs" || rc=$?
	check "a read of an uncached block of $f fails with the origin down" \
		test "$rc" != 0
done
grep -h . "$T/e.errs" | head -n 1 | sed 's/^/# error seen: /' 
getfattr -d -m - "$MNT"/*.img >"$T/e.xattr" 2>&1 || true
check "the xattrs were read (origin among them)" grep -q 'origin=' "$T/e.xattr"
note "xattr origin values: $(grep 'origin=' "$T/e.xattr" | tr '\n' ' ')"
stop_imgcache "$MNT"
if [ -x "$REPORT" ]; then
	for mode in "" --json --prometheus; do
		# shellcheck disable=SC2086
		"$REPORT" --cache-dir "$CACHE" --no-advance $mode >>"$T/e.report" 2>&1 || true
	done
	"$REPORT" --cache-dir "$CACHE" --check-pinned >>"$T/e.report" 2>&1 || true
	check "imgcache-report printed something" grep -q . "$T/e.report"
else
	note "no $REPORT: report not checked"
fi
sqlite3 "$CACHE/index.db" 'select * from events' >"$T/e.events" 2>&1 || true
for what in "daemon log (-d):$ELOG" "errors of failing reads:$T/e.errs" \
	"xattrs:$T/e.xattr" "imgcache-report outputs:$T/e.report" \
	"index events:$T/e.events"; do
	f=${what#*:}
	[ -e "$f" ] || continue
	if grep -qi secret "$f"; then
		not_ok "no secret in the ${what%%:*}: $(grep -i secret "$f" | head -n 2 | tr '\n' ' ')"
	else
		ok "no secret in the ${what%%:*} ($(wc -l <"$f") lines)"
	fi
done
n=$(sqlite3 "$CACHE/index.db" "select count(*) from templates where origin like '%secret%'" 2>/dev/null || echo '?')
note "index.db (mode $(stat -c %04a "$CACHE/index.db")) keeps $n origin URL(s) with credentials in clear (used to detect a changed origin)"
# The daemon accepts a cache_dir that others may enter (0755: no write
# bits); the credentials in index.db must still be unreadable to them.
chmod 0755 "$CACHE"
start_imgcache "$T/conf-e" "$MNT"
ok "a 0755 cache_dir is accepted"
stop_imgcache "$MNT"
for f in "$CACHE"/index.db*; do
	rc=0
	$NOBODY grep -q secret "$f" 2>/dev/null || rc=$?
	# grep: 0 found (leak), 1 readable without it, 2 unreadable
	check "nobody cannot read credentials from $(basename "$f") (mode $(stat -c %04a "$f"))" \
		test "$rc" != 0
done
