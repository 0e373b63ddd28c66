#!/bin/sh
# t-checksum: a cached block whose bytes were changed on disk while the
# daemon was stopped fails its checksum on the first read after the restart,
# is discarded and refetched from the origin: readers get the origin's bytes.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

BS=65536
make_file "$T/src/disk.img" 8
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/omnt/disk.img" >>"$T/conf"
MNT=$T/mnt

start_imgcache "$T/conf" "$MNT"
bounded cat "$MNT/disk.img" >"$T/first"
assert_same "cold read equals origin" "$T/first" "$T/src/disk.img"
stop_imgcache "$MNT"

# Flip bytes inside blocks 3 and 100 of the data file.
DATA=$(ls "$CACHE"/data/disk.img.*)
write_at "$DATA" $((3 * BS + 100)) 16
write_at "$DATA" $((100 * BS)) 4096
if cmp -s "$DATA" "$T/src/disk.img"; then
	fail "the data file was not changed by the test"
fi

from=$(($(count_reads "$OLOG") + 1))
start_imgcache "$T/conf" "$MNT"
bounded dd if="$MNT/disk.img" of="$T/second" bs=1M iflag=direct status=none
assert_same "read after corruption equals origin" "$T/second" "$T/src/disk.img"
assert_le "block 3 refetched from the origin" 1 \
	"$(reads_overlapping "$OLOG" /disk.img $((3 * BS)) $((4 * BS)) "$from")"
assert_le "block 100 refetched from the origin" 1 \
	"$(reads_overlapping "$OLOG" /disk.img $((100 * BS)) $((101 * BS)) "$from")"
assert_eq "intact blocks not refetched" 0 \
	"$(reads_overlapping "$OLOG" /disk.img $((10 * BS)) $((90 * BS)) "$from")"
check "the log names the discarded block" \
	grep -q "block 3 of generation .* failed its checksum" "$IMGCACHE_LOG"
stop_imgcache "$MNT"
assert_same "data file repaired" "$DATA" "$T/src/disk.img"
