#!/bin/sh
# t-kernel-readahead: the mount's kernel readahead (its bdi's
# read_ahead_kb, 128 KiB for a FUSE mount) is raised to kernel_readahead
# before the first file is opened (at the first lookup); by default, and
# with kernel_readahead = 0, the kernel's stays.  A buffered sequential read still reads the origin's bytes.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
[ -w /sys/class/bdi ] || skip "/sys/class/bdi is not writable here"

make_file "$T/src/a.img" 8
MNT=$T/mnt
# ra_kb: the mount's read_ahead_kb now.
ra_kb() { cat "/sys/class/bdi/$(mountpoint -d "$MNT")/read_ahead_kb"; }
for want in default 0 1M 256K; do
	{
		global_section
		[ "$want" = default ] || printf 'kernel_readahead = %s\n' "$want"
		printf '\n[template a.img]\norigin = %s\n' "$T/src/a.img"
	} >"$T/conf"
	start_imgcache "$T/conf" "$MNT"
	before=$(ra_kb)
	assert_same "kernel_readahead = $want: a buffered read" \
		"$MNT/a.img" "$T/src/a.img"
	case $want in
	default | 0) expect=$before ;;
	1M) expect=1024 ;;
	256K) expect=256 ;;
	esac
	assert_eq "kernel_readahead = $want: read_ahead_kb after the first open (was $before)" \
		"$expect" "$(ra_kb)"
	stop_imgcache "$MNT"
done
