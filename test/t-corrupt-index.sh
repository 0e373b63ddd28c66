#!/bin/sh
# t-corrupt-index: a corrupt index.db (garbage, truncated, or without a
# table the daemon needs) is moved aside with a log line; the cache starts empty, the mount succeeds and reads are
# still correct; the new index is sound.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

SIZE=$((8 * 1048576 + 4097))
make_file_bytes "$T/src/disk.img" "$SIZE"
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img" >>"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img
DB=$CACHE/index.db
NBLOCKS=$(((SIZE + BS - 1) / BS))

start_imgcache "$T/conf" "$MNT"
assert_same "first read equals origin" "$F" "$T/src/disk.img"
stop_imgcache "$MNT"
check "index.db exists after unmount" test -s "$DB"

# nbad: number of moved-aside index files (index.db.bad-*, without -wal/-shm)
nbad() {
	find "$CACHE" -maxdepth 1 -name 'index.db.bad-*' ! -name '*-wal' \
		! -name '*-shm' | wc -l
}

# corrupt_then_mount DESC: after index.db was damaged, the daemon mounts,
# says so in its log, moves the file aside and serves correct bytes.
corrupt_then_mount() {
	rm -f "$DB-wal" "$DB-shm"
	nbad0=$(nbad)
	start_imgcache "$T/conf" "$MNT"
	ok "$1: mount succeeds"
	if grep -qiE 'aside|corrupt|index\.db\.bad' "$IMGCACHE_LOG"; then
		ok "$1: log says: $(grep -iE 'aside|corrupt|index\.db\.bad' \
			"$IMGCACHE_LOG" | head -n 1)"
	else
		not_ok "$1: no log line about the index being moved aside"
		show_log "$IMGCACHE_LOG"
	fi
	n=$(nbad)
	check "$1: an index.db.bad-* file exists" test "$n" -ge 1
	if [ "$nbad0" -gt 0 ]; then
		assert_eq "$1: the earlier index.db.bad-* file is kept too" \
			$((nbad0 + 1)) "$n"
	fi
	assert_same "$1: read equals origin" "$F" "$T/src/disk.img"
	if bounded "$RANDREAD" -n 500 -s 3 "$F" "$T/src/disk.img" \
		>"$T/rr.out" 2>&1; then
		ok "$1: $(tail -n 1 "$T/rr.out")"
	else
		not_ok "$1: $(head -n 1 "$T/rr.out")"
	fi
	stop_imgcache "$MNT"
	if command -v sqlite3 >/dev/null 2>&1; then
		assert_eq "$1: the new index.db passes integrity_check" ok \
			"$(sqlite3 -readonly "$DB" 'PRAGMA integrity_check' 2>&1)"
		assert_eq "$1: the new index lists every block read" "$NBLOCKS" \
			"$(sqlite3 -readonly "$DB" 'SELECT count(*) FROM blocks' 2>&1)"
	fi
}

# 1. garbage
head -c 65536 /dev/urandom >"$DB"
corrupt_then_mount "garbage index.db"

# 2. a database cut short (as after a disk problem): valid header, pages gone
dd if="$DB" of="$DB.cut" bs=1024 count=2 status=none
mv "$DB.cut" "$DB"
corrupt_then_mount "truncated index.db"

# 3. a table the daemon needs only later dropped (an sqlite3 shell's
# DROP TABLE): pages and schema version sound, yet unusable
if command -v sqlite3 >/dev/null 2>&1; then
	for table in counters pins; do
		sqlite3 "$DB" "DROP TABLE $table" ||
			fail "sqlite3 could not drop $table"
		corrupt_then_mount "index.db without its $table table"
		check "  ... the log names the missing table" grep -q \
			"unreadable (schema: no table $table); moved aside" \
			"$IMGCACHE_LOG"
	done
else
	note "sqlite3 not installed: the dropped-table cases are skipped"
fi

# 4. and the recovered cache works across a restart like any other
nbad0=$(nbad)
start_imgcache "$T/conf" "$MNT"
assert_eq "after recovery, a sound index is not moved aside" "$nbad0" "$(nbad)"
assert_same "after recovery and restart: read equals origin" "$F" \
	"$T/src/disk.img"
stop_imgcache "$MNT"
