#!/bin/sh
# t-direct: O_DIRECT reads (dd iflag=direct, randread -d, QEMU cache=none)
# return the origin's bytes, and a mount with -o direct_io serves plain reads
# without the kernel page cache.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

SIZE=$((20 * 1048576 + 12345)) # EOF not 4K-aligned
make_file_bytes "$T/src/disk.img" "$SIZE"
global_section >"$T/conf"
printf '\n[template disk.img]\norigin = %s\n' "$T/src/disk.img" >>"$T/conf"

MNT=$T/mnt
F=$MNT/disk.img
start_imgcache "$T/conf" "$MNT"
HAVE_FINCORE=
command -v fincore >/dev/null 2>&1 && HAVE_FINCORE=1
# resident_bytes FILE: bytes of FILE in the kernel page cache (fincore).
resident_bytes() {
	bounded fincore --bytes --noheadings --output RES "$1" 2>/dev/null |
		tr -d ' '
}

for bs in 4K 64K 1M 4M; do
	if bounded dd if="$F" of="$T/out" bs="$bs" iflag=direct status=none \
		2>"$T/dd.err"; then
		assert_same "dd iflag=direct bs=$bs equals origin" "$T/out" \
			"$T/src/disk.img"
	else
		not_ok "dd iflag=direct bs=$bs failed: $(head -n 1 "$T/dd.err")"
	fi
done
if bounded dd if="$F" of="$T/out" bs=64K skip=$((SIZE - 5000)) \
	iflag=direct,skip_bytes status=none 2>"$T/dd.err"; then
	tail -c 5000 "$T/src/disk.img" >"$T/out.origin"
	assert_same "O_DIRECT read of the unaligned tail" "$T/out" "$T/out.origin"
else
	not_ok "O_DIRECT read of the unaligned tail: $(head -n 1 "$T/dd.err")"
fi

if bounded "$RANDREAD" -d -n 1000 -j 4 -s 11 "$F" "$T/src/disk.img" \
	>"$T/rr.out" 2>&1; then
	ok "randread -d -j 4: $(tail -n 1 "$T/rr.out")"
else
	not_ok "randread -d -j 4: $(head -n 1 "$T/rr.out")"
fi

# assert_qemu_copy DESC FILE: qemu-img output equals the origin (qemu rounds
# a raw image up to whole 512-byte sectors: the padding must be zeros).
assert_qemu_copy() {
	_q_pad=$(((512 - SIZE % 512) % 512))
	assert_eq "$1: size is the origin's rounded to 512" $((SIZE + _q_pad)) \
		"$(stat -c %s "$2")"
	head -c "$SIZE" "$2" >"$T/qemu.head"
	assert_same "$1: equals origin" "$T/qemu.head" "$T/src/disk.img"
	rm -f "$T/qemu.head"
}

# --- QEMU with cache=none (O_DIRECT), as a VM's backing file is opened
if command -v qemu-io >/dev/null 2>&1 && command -v qemu-img >/dev/null 2>&1; then
	if bounded qemu-io -f raw -t none -r -c "read 0 64k" -c "read 1000 5000" \
		-c "read $((SIZE - 4096)) 4096" -c "read 4194304 1048576" \
		"$F" >"$T/qio.out" 2>&1 &&
		[ "$(grep -c 'bytes at offset' "$T/qio.out")" = 4 ] &&
		! grep -q 'failed' "$T/qio.out"; then
		ok "qemu-io -t none reads succeed"
	else
		not_ok "qemu-io -t none: $(grep -v 'bytes at offset' "$T/qio.out" |
			head -n 1)"
	fi
	if bounded qemu-img convert -f raw -T none -O raw "$F" "$T/conv.raw" \
		2>"$T/conv.err"; then
		assert_qemu_copy "qemu-img convert -T none" "$T/conv.raw"
	else
		not_ok "qemu-img convert -T none: $(head -n 1 "$T/conv.err")"
	fi
	rm -f "$T/conv.raw"
	if qemu-img create -q -f qcow2 -F raw -b "$F" "$T/vm.qcow2" \
		2>"$T/conv.err" &&
		bounded qemu-img convert -f qcow2 -T none -O raw "$T/vm.qcow2" \
			"$T/conv.raw" 2>"$T/conv.err"; then
		assert_qemu_copy "qcow2 overlay backed by the template" "$T/conv.raw"
	else
		not_ok "qcow2 overlay on the template: $(head -n 1 "$T/conv.err")"
	fi
	rm -f "$T/conv.raw"
else
	note "qemu-io/qemu-img not installed: QEMU checks skipped"
fi

# Control for the -o direct_io check below: plain opens use the page cache.
bounded cat "$F" >"$T/out"
assert_same "cat equals origin" "$T/out" "$T/src/disk.img"
if [ -n "$HAVE_FINCORE" ] && res=$(resident_bytes "$F") && [ -n "$res" ]; then
	check "plain opens keep the kernel page cache ($res bytes resident)" \
		test "$res" -gt 0
fi

# --- a data file cut short behind the daemon's back: reads of present
# blocks (64K and 128K ones are spliced from the data file) must not come
# back short or wrong; the checked path refetches what the file lost.
DATA=$(ls "$CACHE"/data/disk.img.* | head -n 1)
truncate -s $((8 * 1048576 + 4096)) "$DATA"
for bs in 64K 128K; do
	if bounded dd if="$F" of="$T/out" bs="$bs" iflag=direct status=none \
		2>"$T/dd.err"; then
		assert_same "data file cut short: dd iflag=direct bs=$bs equals origin" \
			"$T/out" "$T/src/disk.img"
	else
		not_ok "data file cut short: dd iflag=direct bs=$bs failed: $(head -n 1 "$T/dd.err")"
	fi
done
stop_imgcache "$MNT"

# --- -o direct_io: every open bypasses the page cache
start_imgcache "$T/conf" "$MNT" -o direct_io
bounded cat "$F" >"$T/out"
assert_same "cat on a -o direct_io mount equals origin" "$T/out" \
	"$T/src/disk.img"
bounded dd if="$F" of="$T/out" bs=1M status=none
assert_same "dd bs=1M on a -o direct_io mount equals origin" "$T/out" \
	"$T/src/disk.img"
if bounded "$RANDREAD" -n 500 -j 2 -s 12 "$F" "$T/src/disk.img" \
	>"$T/rr.out" 2>&1; then
	ok "randread on a -o direct_io mount: $(tail -n 1 "$T/rr.out")"
else
	not_ok "randread on a -o direct_io mount: $(head -n 1 "$T/rr.out")"
fi
# With direct_io the kernel keeps no pages of the file.
if [ -n "$HAVE_FINCORE" ] && res=$(resident_bytes "$F") && [ -n "$res" ]; then
	assert_eq "no page cache kept for a -o direct_io mount" 0 "$res"
else
	note "fincore unavailable: page-cache check skipped"
fi
stop_imgcache "$MNT"
