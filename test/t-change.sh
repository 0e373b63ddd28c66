#!/bin/sh
# t-change: when the origin file is replaced (new inode, same or different
# size), a remount and a new open both see the new content, never the old;
# an open handle never mixes bytes of two generations.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

MIB=1048576
SIZE=$((8 * MIB))
for v in 1 2 3 5 6; do
	make_file "$T/v$v" 8
done
make_file_bytes "$T/v4" $((9 * MIB + 777))

# replace_origin FILE: atomically replace the origin with a copy of FILE
# (cp to a temporary name + mv: a new inode, as an image update would do).
replace_origin() {
	cp "$1" "$T/src/.disk.img.tmp"
	mv "$T/src/.disk.img.tmp" "$T/src/disk.img"
}
mkdir -p "$T/src"
replace_origin "$T/v1"

global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img" >>"$T/conf"
MNT=$T/mnt
F=$MNT/disk.img

# --- change while unmounted
start_imgcache "$T/conf" "$MNT"
bounded cat "$F" >"$T/out"
assert_same "v1 reads back" "$T/out" "$T/v1"
stop_imgcache "$MNT"

replace_origin "$T/v2"
start_imgcache "$T/conf" "$MNT"
bounded cat "$F" >"$T/out"
assert_same "after remount: content is the new origin (v2)" "$T/out" "$T/v2"
if cmp -s "$T/out" "$T/v1"; then
	not_ok "after remount: old content (v1) still served"
fi
assert_eq "after remount: size" "$SIZE" "$(stat -c %s "$F")"

# --- change while mounted: a new open sees the new content
# (v2 is now fully cached, and in the kernel page cache)
replace_origin "$T/v3"
bounded cat "$F" >"$T/out"
assert_same "while mounted, same size: new open reads v3" "$T/out" "$T/v3"
bounded dd if="$F" of="$T/out" bs=1M iflag=direct status=none
assert_same "while mounted, same size: O_DIRECT open reads v3" "$T/out" "$T/v3"
assert_eq "mtime follows the new origin" "$(stat -c %Y "$T/src/disk.img")" \
	"$(stat -c %Y "$F")"

replace_origin "$T/v4"
bounded cat "$F" >"$T/out"
assert_same "while mounted, new size: new open reads v4" "$T/out" "$T/v4"
# size_is N: the mount reports st_size N
size_is() { [ "$(stat -c %s "$F")" = "$1" ]; }
check "while mounted, new size: st_size follows (within the 1 s attr timeout)" \
	wait_for 2 size_is $((9 * MIB + 777))

# --- an open handle keeps one generation (or fails), never a mix
replace_origin "$T/v5"
exec 3<"$F"
rc1=0
bounded dd bs=1M count=1 status=none <&3 >"$T/part1" 2>"$T/dd.err" || rc1=$?
replace_origin "$T/v6"
rc2=0
bounded dd bs=1M status=none <&3 >"$T/part2" 2>>"$T/dd.err" || rc2=$?
exec 3<&-
cat "$T/part1" "$T/part2" >"$T/out"
got=$(stat -c %s "$T/out")
if [ "$rc1" = 0 ] && [ "$rc2" = 0 ]; then
	assert_same "handle opened on v5 reads all of v5 across a change" \
		"$T/out" "$T/v5"
elif grep -q 'Input/output error' "$T/dd.err"; then
	extract "$T/v5" 0 "$got" "$T/out.v5"
	assert_same "handle opened on v5 fails with EIO after a prefix of v5" \
		"$T/out" "$T/out.v5"
else
	not_ok "reading a handle across a change: $(head -n 1 "$T/dd.err")"
fi
bounded cat "$F" >"$T/out"
assert_same "a new open after that reads v6" "$T/out" "$T/v6"
stop_imgcache "$MNT"

# --- and a remount keeps serving the latest
start_imgcache "$T/conf" "$MNT"
assert_same "after remount: v6" "$F" "$T/v6"
stop_imgcache "$MNT"
note "data files: $(find "$CACHE/data" -type f -printf '%f ' 2>/dev/null)"
