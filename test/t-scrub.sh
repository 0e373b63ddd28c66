#!/bin/sh
# t-scrub: imgcache-scrub finds exactly the blocks whose bytes were changed
# on disk (daemon stopped), --repair removes them from the index and punches
# them out, and the daemon then refetches exactly those; the scrub refuses
# to run beside a live daemon (ctl.sock answering) but not beside a stale
# socket; usage errors exit 2.  Then the index faults t-corrupt-index.sh
# does not cover: index.db missing with its WAL left over, a garbage WAL
# beside a good index.db, a WAL with a valid header and garbage frames --
# the daemon mounts, says at most one line about it, serves the origin's
# bytes, keeps a good index.db, and a cache rebuilt empty does not keep the
# old blocks' disk space.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
SCRUB=$top_builddir/tools/imgcache-scrub
[ -x "$SCRUB" ] || fail "$SCRUB is not built (run make)"
command -v sqlite3 >/dev/null 2>&1 || skip "sqlite3 not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"

SIZE=$((8 * 1048576 + 5000)) # a short last block
NBLOCKS=$(((SIZE + BS - 1) / BS))
LAST=$((NBLOCKS - 1))
LASTLEN=$((SIZE - LAST * BS))
make_file_bytes "$T/src/disk.img" "$SIZE"
# Blocks 20..23 all zero: kept as holes, flagged in the index.
dd if=/dev/zero of="$T/src/disk.img" bs=64K seek=20 count=4 conv=notrunc \
	status=none
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/omnt/disk.img" >>"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img
DB=$CACHE/index.db
DATA=$CACHE/data/disk.img.1

# scrub ARGS...: run imgcache-scrub; output in $T/scrub.out, status in $SRC.
scrub() {
	SRC=0
	bounded "$SCRUB" "$@" >"$T/scrub.out" 2>&1 || SRC=$?
}

# scrub_expect DESC STATUS ARGS...: run it, assert its exit status.
scrub_expect() {
	_se_desc=$1
	_se_want=$2
	shift 2
	scrub "$@"
	if [ "$SRC" = "$_se_want" ]; then
		ok "$_se_desc: exit $_se_want"
	else
		not_ok "$_se_desc: exit $SRC, expected $_se_want"
		show_log "$T/scrub.out" 20
	fi
}

# reported: block numbers of the bad blocks the last scrub listed.
reported() {
	awk '$1 == "disk.img:" && $2 == "block" { print $3 }' "$T/scrub.out" |
		sort -n | tr '\n' ' ' | sed 's/ $//'
}

rows() { sqlite3 -readonly "$DB" 'SELECT count(*) FROM blocks' 2>&1; }

# flip FILE OFFSET: invert one byte in place.
flip() {
	_fb=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	# shellcheck disable=SC2059 # the format is the octal escape we build
	printf "\\$(printf %03o $((_fb ^ 255)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# is_zero FILE OFFSET LEN: the range reads as zeros.
is_zero() {
	extract "$1" "$2" "$3" "$T/range"
	head -c "$3" /dev/zero | cmp -s - "$T/range"
}

# ------------------------------------------------ 1. a sound cache
start_imgcache "$T/conf" "$MNT"
assert_same "cold read equals origin" "$F" "$T/src/disk.img"
stop_imgcache "$MNT"
assert_eq "the index holds every block" "$NBLOCKS" "$(rows)"
scrub_expect "scrub of a sound cache" 0 --cache-dir "$CACHE"
check "it checked every block, 4 all-zero, none bad" grep -qx \
	"imgcache-scrub: 1 template, $NBLOCKS blocks checked (4 all-zero), 0 bad" \
	"$T/scrub.out"
scrub_expect "scrub --config (cache_dir from the config)" 0 --config "$T/conf"

# ------------------------------------------------ 2. flipped bytes
cp "$DATA" "$T/data.before"
flip "$DATA" $((5 * BS + 1000))
flip "$DATA" $((60 * BS))
flip "$DATA" $((SIZE - 1))
# A zero block's bytes are never read by anyone: changing them is no fault.
flip "$DATA" $((21 * BS + 7))
if cmp -s "$DATA" "$T/data.before"; then
	fail "the data file was not changed by the test"
fi
scrub_expect "scrub after 3 blocks were damaged" 1 -C "$CACHE"
assert_eq "exactly the damaged blocks are reported" "5 60 $LAST" "$(reported)"
check "a report names template, block, offset, length and reason" grep -qx \
	"disk.img: block 60 at offset $((60 * BS)) (65536 bytes): checksum mismatch" \
	"$T/scrub.out"
check "the short last block is reported with its length" grep -qx \
	"disk.img: block $LAST at offset $((LAST * BS)) ($LASTLEN bytes): checksum mismatch" \
	"$T/scrub.out"
scrub_expect "scrub of the template by name" 1 -C "$CACHE" disk.img
assert_eq "by name: the same blocks" "5 60 $LAST" "$(reported)"
scrub_expect "scrub of a template not in the index" 2 -C "$CACHE" nosuch.img
check "... names it" grep -q "no template 'nosuch.img'" "$T/scrub.out"
assert_eq "a scrub without --repair changes nothing" "$NBLOCKS" "$(rows)"

scrub_expect "scrub --repair" 1 --repair -C "$CACHE"
assert_eq "--repair: the damaged blocks are reported" "5 60 $LAST" "$(reported)"
check "--repair: 3 removed" grep -q ", 3 bad, 3 removed from the index$" \
	"$T/scrub.out"
assert_eq "--repair: their rows are gone" $((NBLOCKS - 3)) "$(rows)"
assert_eq "--repair: the other rows stay" 0 "$(sqlite3 -readonly "$DB" \
	'SELECT count(*) FROM blocks WHERE blk IN (5, 60, '"$LAST"')')"
check "--repair: block 5 punched out" is_zero "$DATA" $((5 * BS)) "$BS"
check "--repair: block 60 punched out" is_zero "$DATA" $((60 * BS)) "$BS"
check "--repair: the last block punched out" is_zero "$DATA" $((LAST * BS)) \
	"$LASTLEN"
assert_eq "--repair leaves a sound index" ok \
	"$(sqlite3 -readonly "$DB" 'PRAGMA integrity_check' 2>&1)"
scrub_expect "scrub after --repair" 0 -C "$CACHE"
check "... checked the $((NBLOCKS - 3)) remaining blocks" grep -q \
	"^imgcache-scrub: 1 template, $((NBLOCKS - 3)) blocks checked (4 all-zero), 0 bad$" \
	"$T/scrub.out"

from=$(($(count_reads "$OLOG") + 1))
start_imgcache "$T/conf" "$MNT"
bounded dd if="$F" of="$T/read" bs=1M iflag=direct status=none
assert_same "after --repair: read equals origin" "$T/read" "$T/src/disk.img"
for b in 5 60 "$LAST"; do
	assert_le "block $b refetched from the origin" 1 \
		"$(reads_overlapping "$OLOG" /disk.img $((b * BS)) $((b * BS + 1)) "$from")"
done
assert_eq "intact blocks 6..59 not refetched" 0 \
	"$(reads_overlapping "$OLOG" /disk.img $((6 * BS)) $((60 * BS)) "$from")"
assert_eq "intact blocks 61..$((LAST - 1)) not refetched" 0 \
	"$(reads_overlapping "$OLOG" /disk.img $((61 * BS)) $((LAST * BS)) "$from")"
assert_eq "the daemon met no bad block (the scrub removed them)" 0 \
	"$(grep -c 'failed its checksum' "$IMGCACHE_LOG" || true)"

# ------------------------------------------------ 3. a running daemon
if [ -S "$CACHE/ctl.sock" ]; then
	scrub_expect "scrub beside the running daemon" 2 -C "$CACHE"
	check "... says the daemon runs" grep -q "imgcache is running" \
		"$T/scrub.out"
else
	note "this daemon serves no ctl.sock: the listener below stands in"
fi
stop_imgcache "$MNT"
scrub_expect "scrub after the refetch" 0 -C "$CACHE"

# A process listening on ctl.sock, as the daemon does; it exits on its own
# after 60 s, and leaves the socket file behind (a stale socket).
rm -f "$CACHE/ctl.sock"
python3 - "$CACHE/ctl.sock" "$T/listening" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
open(sys.argv[2], "w").close()
s.settimeout(1)
end = time.time() + 60
while time.time() < end:
    try:
        s.accept()[0].close()
    except socket.timeout:
        pass
EOF
LISTENER=$!
wait_for 10 test -e "$T/listening" || fail "the ctl.sock listener did not start"
scrub_expect "scrub while ctl.sock answers" 2 -C "$CACHE"
check "... says imgcache is running" grep -q "imgcache is running" \
	"$T/scrub.out"
scrub_expect "scrub --repair while ctl.sock answers" 2 --repair -C "$CACHE"
kill "$LISTENER"
wait "$LISTENER" 2>/dev/null || true
check "the listener left its socket file" test -S "$CACHE/ctl.sock"
scrub_expect "scrub beside a stale ctl.sock (no daemon)" 0 -C "$CACHE"
rm -f "$CACHE/ctl.sock"

# ------------------------------------------------ 4. usage and unreadable
scrub_expect "an unknown option" 2 --bogus
scrub_expect "a cache_dir without an index" 2 -C "$T/nowhere"
check "... says there is no index" grep -q "no cache index" "$T/scrub.out"
scrub_expect "an unreadable config" 2 --config "$T/no.conf"

# ------------------------------------------------ 5. the data file lost
mv "$DATA" "$T/data.saved"
scrub_expect "scrub with the data file gone" 1 -C "$CACHE"
assert_eq "every non-zero block reported missing" $((NBLOCKS - 4)) \
	"$(grep -c ': data file missing$' "$T/scrub.out" || true)"
scrub_expect "scrub --repair with the data file gone" 1 -r -C "$CACHE"
assert_eq "only the 4 zero blocks remain in the index" 4 "$(rows)"
scrub_expect "scrub after that repair" 0 -C "$CACHE"
start_imgcache "$T/conf" "$MNT"
assert_same "with the data file gone and repaired: read equals origin" "$F" \
	"$T/src/disk.img"
stop_imgcache "$MNT"
scrub_expect "scrub of the refilled cache" 0 -C "$CACHE"

# ------------------------------------------------ 6. index faults
# nbad: index files moved aside so far.
nbad() {
	find "$CACHE" -maxdepth 1 -name 'index.db.bad-*' ! -name '*-wal' \
		! -name '*-shm' | wc -l
}

# index_lines: log lines of the last start about the index.
index_lines() {
	grep -ciE 'index|aside|corrupt|wal' "$IMGCACHE_LOG" || true
}

# mount_and_read DESC: mount, one line at most about the index, whole read
# equals origin (origin reads of it from line $from on are counted in $got).
mount_and_read() {
	from=$(($(count_reads "$OLOG") + 1))
	start_imgcache "$T/conf" "$MNT"
	ok "$1: mount succeeds"
	assert_le "$1: at most one log line about the index" "$(index_lines)" 1
	if [ "$(index_lines)" = 1 ]; then
		note "$1: log says: $(grep -iE 'index|aside|corrupt|wal' \
			"$IMGCACHE_LOG")"
	fi
	bounded dd if="$F" of="$T/read" bs=1M iflag=direct status=none
	assert_same "$1: read equals origin" "$T/read" "$T/src/disk.img"
	got=$(reads_overlapping "$OLOG" /disk.img 0 "$SIZE" "$from")
}

# rebuilt_empty DESC: after a start with an index rebuilt empty, read the
# first MiB only and stop: the data file may hold no more than the index
# claims -- the blocks cached under the lost index must not stay allocated,
# unaccounted for by quota and cache_max.
rebuilt_empty() {
	start_imgcache "$T/conf" "$MNT"
	bounded dd if="$F" of="$T/read" bs=1M count=1 iflag=direct status=none
	stop_imgcache "$MNT"
	claimed=$(sqlite3 -readonly "$DB" \
		'SELECT count(*) FROM blocks WHERE flags & 1 = 0')
	alloc=$(data_bytes "$DATA")
	assert_le "$1: data file allocation within what the new index holds" \
		"$alloc" $((claimed * BS))
}

# 6a. index.db missing, its WAL left over (the daemon was killed)
start_imgcache "$T/conf" "$MNT"
bounded cat "$F" >/dev/null
wait_for 10 test -s "$DB-wal" || fail "the running daemon has no WAL"
kill -KILL "$IMGCACHE_PID"
wait "$IMGCACHE_PID" 2>/dev/null || true
_unregister "$IMGCACHE_PID"
fusermount3 -uz "$MNT"
check "a WAL is left over after kill -9" test -s "$DB-wal"
cp "$DB-wal" "$T/real.wal"
rm -f "$DB" "$DB-shm"
mount_and_read "index.db missing, WAL left over"
stop_imgcache "$MNT"
assert_eq "index.db missing: the new index is sound" ok \
	"$(sqlite3 -readonly "$DB" 'PRAGMA integrity_check' 2>&1)"
assert_eq "index.db missing: the new index lists every block read" \
	"$NBLOCKS" "$(rows)"
rm -f "$DB" "$DB-wal" "$DB-shm"
cp "$T/real.wal" "$DB-wal"
rebuilt_empty "index.db missing, WAL left over"

# Make a good, fully cached index again.
start_imgcache "$T/conf" "$MNT"
bounded cat "$F" >/dev/null
stop_imgcache "$MNT"
check "a clean stop leaves no WAL" test ! -s "$DB-wal"
nbad0=$(nbad)

# 6b. a garbage WAL beside a good index.db
head -c 100000 /dev/urandom >"$DB-wal"
mount_and_read "garbage WAL"
assert_eq "garbage WAL: the good index.db is kept (no origin reads)" 0 "$got"
stop_imgcache "$MNT"
assert_eq "garbage WAL: nothing moved aside" "$nbad0" "$(nbad)"
assert_eq "garbage WAL: the index is sound" ok \
	"$(sqlite3 -readonly "$DB" 'PRAGMA integrity_check' 2>&1)"

# 6c. a WAL with a valid header (from a real WAL) and garbage frames
{
	head -c 32 "$T/real.wal"
	head -c 100000 /dev/urandom
} >"$DB-wal"
mount_and_read "WAL with garbage frames"
assert_eq "WAL with garbage frames: the good index.db is kept" 0 "$got"
stop_imgcache "$MNT"
assert_eq "WAL with garbage frames: nothing moved aside" "$nbad0" "$(nbad)"
scrub_expect "scrub after the WAL faults" 0 -C "$CACHE"

# 6d. a garbage index.db (moved aside: t-corrupt-index.sh checks the log
# line): the cache it described must not keep its disk space.
head -c 65536 /dev/urandom >"$DB"
rm -f "$DB-wal" "$DB-shm"
rebuilt_empty "garbage index.db"
assert_eq "garbage index.db: moved aside" $((nbad0 + 1)) "$(nbad)"

stop_originfs "$T/omnt"
