#!/bin/sh
# t-manifest: imgcache-manifest writes a manifest that holds, for a ~40 MiB
# template with zero regions and a short last block, exactly the SHA-256 of
# every block (python3's hashlib as the oracle) with the zero blocks
# marked, and the template's mtime to the nanosecond (a copy with another
# mtime verifies with a note that the daemon will only check with it),
# the same whatever the thread count; --verify passes on the file,
# and after one byte is flipped fails naming that block (several: the
# first ones in order, and how many); corrupted manifests (bad header,
# truncated, wrong block size, checksum mismatch, extra bytes) are refused
# with a message naming what is wrong; a build that fails (the output's
# filesystem full) leaves neither a half-written OUT nor its .tmp, and an
# older OUT stays whole.  A sparse file gives the manifest of its dense
# copy, byte for byte, while its holes are not read (the build's "bytes
# read": a 64 GiB file with five data blocks reads at most those five).
# Usage errors exit 2.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
MANIFEST=$top_builddir/tools/imgcache-manifest
[ -x "$MANIFEST" ] || fail "$MANIFEST is not built (run make)"
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"

SIZE=$((40 * 1048576 + 12345)) # a short last block
NBLOCKS=$(((SIZE + BS - 1) / BS))
LAST=$((NBLOCKS - 1))
F=$T/src/disk.img
M=$F.imgcache-manifest
make_file_bytes "$F" "$SIZE"
# Blocks 100..131 zero, and zeros that cover no whole block (not marked).
dd if=/dev/zero of="$F" bs=64K seek=100 count=32 conv=notrunc status=none
dd if=/dev/zero of="$F" bs=1 seek=$((200 * BS + 5)) count=60000 \
	conv=notrunc status=none
NZERO=32

# run ARGS...: the tool; stdout+stderr in $T/out, exit status in $RC.
run() {
	RC=0
	bounded "$MANIFEST" "$@" >"$T/out" 2>&1 || RC=$?
}

# expect DESC STATUS PATTERN ARGS...: run, assert status and output.
expect() {
	_e_desc=$1
	_e_rc=$2
	_e_pat=$3
	shift 3
	run "$@"
	if [ "$RC" = "$_e_rc" ] && grep -q -- "$_e_pat" "$T/out"; then
		ok "$_e_desc: exit $_e_rc, '$_e_pat'"
	else
		not_ok "$_e_desc: exit $RC (want $_e_rc), output:
$(sed 's/^/#   /' "$T/out")"
	fi
}

# oracle FILE BS: the expected --dump block lines, from hashlib.
oracle() {
	python3 - "$1" "$2" <<'PYEOF'
import hashlib, sys
path, bs = sys.argv[1], int(sys.argv[2])
with open(path, "rb") as f:
    i = 0
    while True:
        b = f.read(bs)
        if not b:
            break
        h = "zero" if b.count(0) == len(b) else hashlib.sha256(b).hexdigest()
        print(i, i * bs, len(b), h)
        i += 1
PYEOF
}

# --- build, dump, verify
expect "build with the defaults" 0 "wrote $M" "$F"
check "manifest beside the template" test -s "$M"
assert_eq "manifest length = 64 + 32 x nblocks + 32" \
	$((64 + 32 * NBLOCKS + 32)) "$(stat -c %s "$M")"
run --dump "$M"
assert_eq "--dump exits 0" 0 "$RC"
assert_eq "--dump: file_size" "file_size $SIZE" "$(grep '^file_size' "$T/out")"
assert_eq "--dump: block_size" "block_size $BS" "$(grep '^block_size' "$T/out")"
assert_eq "--dump: nblocks" "nblocks $NBLOCKS" "$(grep '^nblocks' "$T/out")"
assert_eq "--dump: zero blocks" "zero_blocks $NZERO" \
	"$(grep '^zero_blocks' "$T/out")"
assert_eq "--dump: the template's mtime, to the nanosecond" \
	"$(python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime_ns)' "$F")" \
	"$(sed -n 's/^template_mtime \([-0-9]*\) .*/\1/p' "$T/out")"
grep '^[0-9]' "$T/out" >"$T/dump.blocks"
oracle "$F" "$BS" >"$T/oracle.blocks"
assert_same "every entry is the block's SHA-256, zero blocks marked" \
	"$T/oracle.blocks" "$T/dump.blocks"
assert_eq "the short last block is hashed at its length" \
	"$LAST $((LAST * BS)) $((SIZE - LAST * BS))" \
	"$(tail -n 1 "$T/dump.blocks" | cut -d' ' -f1-3)"
expect "--verify of the file" 0 "all $NBLOCKS blocks match" \
	--verify "$M" "$F"
check "  ... and says nothing of its mtime" sh -c "! grep -q note: '$T/out'"
cp -p "$F" "$T/touched.img"
touch -d "2020-01-02 03:04:05 UTC" "$T/touched.img"
expect "--verify of a copy with another mtime: the bytes match" 0 \
	"all $NBLOCKS blocks match" --verify "$M" "$T/touched.img"
check "  ... with a note that the daemon will only check" grep -q \
	"note: its mtime 2020-01-02T03:04:05.000000000Z is not the manifest's" \
	"$T/out"
rm -f "$T/touched.img"

expect "build with 1 thread" 0 "1 thread," -j 1 -o "$T/m1" "$F"
expect "build with 3 threads" 0 "3 threads," --threads 3 -o "$T/m3" "$F"
assert_same "1 thread or 3 threads: the same manifest" "$T/m1" "$M"
assert_same "3 threads: the same manifest" "$T/m3" "$M"

expect "--block-size 4K" 0 "blocks of 4096" --block-size 4K -o "$T/m4k" "$F"
oracle "$F" 4096 >"$T/oracle4k.blocks"
run --dump "$T/m4k"
grep '^[0-9]' "$T/out" >"$T/dump4k.blocks"
assert_same "4K blocks: every entry right" "$T/oracle4k.blocks" \
	"$T/dump4k.blocks"

# --- a changed file
cp "$F" "$T/changed.img"
flip() { # flip FILE OFFSET: invert one byte in place
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2]))
b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' "$1" "$2"
}
flip "$T/changed.img" $((333 * BS + 4321))
expect "--verify after one byte flipped" 1 \
	"block 333 at offset $((333 * BS)) ($BS bytes) differs" \
	--verify "$M" "$T/changed.img"
check "  ... and says 1 of $NBLOCKS" grep -q "1 of $NBLOCKS blocks differ" \
	"$T/out"
check "  ... and names no other block" \
	test "$(grep -c 'differs$' "$T/out")" = 1
# More: a zero block, the short last block, and 12 in a row.
flip "$T/changed.img" $((110 * BS))
flip "$T/changed.img" $((SIZE - 1))
i=400
while [ $i -lt 412 ]; do
	flip "$T/changed.img" $((i * BS + 7))
	i=$((i + 1))
done
expect "--verify, 15 blocks differ" 1 "15 of $NBLOCKS blocks differ" \
	--verify "$M" "$T/changed.img"
assert_eq "  ... the first 10 named, in order" \
	"110 333 400 401 402 403 404 405 406 407" \
	"$(sed -n 's/.*: block \([0-9]*\) at.*/\1/p' "$T/out" | tr '\n' ' ' |
		sed 's/ $//')"
check "  ... and the rest counted" grep -q '\.\.\. and 5 more' "$T/out"
head -c $((SIZE - 1)) "$F" >"$T/short.img"
expect "--verify of a file of another size" 1 \
	"the file has $((SIZE - 1)) bytes, the manifest describes $SIZE" \
	--verify "$M" "$T/short.img"

# --- corrupted manifests: refused by --verify and --dump alike
# patch FILE OFFSET HEXBYTES: overwrite bytes in place.
patch() {
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2]))
f.write(bytes.fromhex(sys.argv[3]))' "$1" "$2" "$3"
}
bad() { # bad NAME: a fresh copy of the good manifest to damage
	cp "$M" "$T/$1"
	echo "$T/$1"
}
B=$(bad magic)
patch "$B" 0 58
expect "bad magic refused" 2 "$B: bad magic" --verify "$B" "$F"
B=$(bad version)
patch "$B" 8 02000000
expect "bad version refused" 2 "unsupported version 2" --dump "$B"
B=$(bad flags)
patch "$B" 28 03000000
expect "unknown flag refused" 2 "unknown flags 0x2" --dump "$B"
B=$(bad trunc)
truncate -s 1000 "$B"
expect "truncated manifest refused" 2 \
	"truncated: 29 entries of $NBLOCKS" --verify "$B" "$F"
B=$(bad trunc-header)
truncate -s 40 "$B"
expect "truncated header refused" 2 "truncated: 40 bytes" --dump "$B"
: >"$T/empty"
expect "empty manifest refused" 2 "truncated: 0 bytes" --dump "$T/empty"
B=$(bad bs3000)
patch "$B" 24 b80b0000 # 3000
expect "block size 3000 refused" 2 "block size 3000 is not a power of two" \
	--verify "$B" "$F"
B=$(bad bs32m)
patch "$B" 24 00000002 # 32 MiB
expect "block size 32M refused" 2 "block size 33554432 is out of range" \
	--verify "$B" "$F"
B=$(bad bs128k)
patch "$B" 24 00000200 # 128 KiB: valid alone, not with this nblocks
expect "wrong block size for nblocks refused" 2 "wrong nblocks" \
	--verify "$B" "$F"
B=$(bad entry)
# Flip the byte's bits: writing a fixed value changed nothing when the
# random template's hash already had it there (1 run in 256: a CI run).
flip() {
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1)
f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))' "$1" "$2"
}
flip "$B" $((64 + 32 * 7 + 3))
cmp -s "$B" "$M" && fail "the damaged copy equals the manifest"
expect "damaged entry: checksum mismatch" 2 "checksum mismatch" \
	--verify "$B" "$F"
B=$(bad extra)
printf 'x' >>"$B"
expect "extra byte refused" 2 "1 extra bytes after the checksum" --dump "$B"
expect "a manifest that is not there" 2 "No such file or directory" \
	--verify "$T/nothing" "$F"

# --- sparse templates: holes are zero blocks, found without reading them
# put FILE OFFSET LEN: LEN random bytes written at OFFSET, in place.
put() {
	head -c "$3" /dev/urandom |
		dd of="$1" bs=4096 seek="$2" oflag=seek_bytes conv=notrunc \
			status=none
}
# nread: the "N bytes read" of the build summary in $T/out.
nread() { sed -n 's/.* \([0-9]*\) bytes read, .*/\1/p' "$T/out"; }
S=$T/sparse.img
SSIZE=$((20 * 1048576 + 777))
truncate -s "$SSIZE" "$S"
put "$S" $((3 * BS)) "$BS"                  # one whole data block
put "$S" $((10 * BS + 1000)) 5000           # data in a block partly hole
dd if=/dev/zero of="$S" bs="$BS" seek=20 count=1 conv=notrunc status=none
put "$S" $((41 * BS - 3000)) 6000           # across blocks 40 and 41
put "$S" $((60 * BS)) $((100 * BS))         # 6.25 MiB across a 4 MiB chunk
put "$S" $((SSIZE - 500)) 500               # the short last block
if [ $(($(stat -c %b "$S") * 512)) -lt $((8 * 1048576)) ]; then
	cp --sparse=never "$S" "$T/dense.img"
	touch -r "$S" "$T/dense.img" # the manifest records the mtime
	check "the dense copy has no holes" test \
		$(($(stat -c %b "$T/dense.img") * 512)) -ge "$SSIZE"
	expect "build of a sparse file" 0 "wrote $T/sparse.m" -o "$T/sparse.m" "$S"
	assert_le "  ... reads less than the file" "$(nread)" $((8 * 1048576))
	expect "build of its dense copy" 0 "wrote $T/dense.m" -o "$T/dense.m" \
		"$T/dense.img"
	assert_eq "  ... reads the whole file" "$SSIZE" "$(nread)"
	assert_same "sparse or dense: the same manifest, byte for byte" \
		"$T/dense.m" "$T/sparse.m"
	run --dump "$T/sparse.m"
	grep '^[0-9]' "$T/out" >"$T/sparse.blocks"
	oracle "$S" "$BS" >"$T/sparse.oracle"
	assert_same "sparse: every entry is the block's SHA-256 or zero" \
		"$T/sparse.oracle" "$T/sparse.blocks"
	expect "sparse, 4 threads, 4K blocks: the dense copy's manifest" 0 \
		"wrote $T/sparse4k.m" -j 4 -b 4K -o "$T/sparse4k.m" "$S"
	expect "  ... and of the dense copy" 0 "wrote $T/dense4k.m" -b 4K -o "$T/dense4k.m" "$T/dense.img"
	assert_same "  ... byte for byte" "$T/dense4k.m" "$T/sparse4k.m"
	expect "--verify of the sparse file" 0 "blocks match" \
		--verify "$T/dense.m" "$S"
	rm -f "$T/dense.img" "$T/dense.m" "$T/dense4k.m" "$T/sparse4k.m"

	# 64 GiB with five data blocks: read, the holes would be 64 GiB of
	# zeros; skipped, the build reads the five blocks only.
	HUGE=$T/huge.img
	HBS=1048576
	truncate -s 64G "$HUGE"
	for b in 0 1 4097 40000 65535; do
		put "$HUGE" $((b * HBS + 12345)) 777
	done
	expect "build of a 64 GiB sparse file" 0 "wrote $T/huge.m" -b 1M \
		-o "$T/huge.m" "$HUGE"
	assert_le "  ... reads at most the five blocks with data" "$(nread)" \
		$((5 * HBS))
	run --dump "$T/huge.m"
	assert_eq "  ... 65531 zero blocks" "zero_blocks 65531" \
		"$(grep '^zero_blocks' "$T/out")"
	grep '^[0-9]' "$T/out" >"$T/huge.blocks"
	python3 - "$HUGE" "$HBS" 0 1 4097 40000 65535 >"$T/huge.oracle" <<'PYEOF'
import hashlib, os, sys
path, bs = sys.argv[1], int(sys.argv[2])
data = set(int(b) for b in sys.argv[3:])
n = (os.stat(path).st_size + bs - 1) // bs
with open(path, "rb") as f:
    for i in range(n):
        h = "zero"
        if i in data:
            f.seek(i * bs)
            h = hashlib.sha256(f.read(bs)).hexdigest()
        print(i, i * bs, bs, h)
PYEOF
	assert_same "  ... the five data blocks hashed, every other one zero" \
		"$T/huge.oracle" "$T/huge.blocks"
	rm -f "$HUGE" "$T/huge.m" "$T/huge.blocks" "$T/huge.oracle"
else
	note "$T keeps no holes: sparse cases skipped"
fi
rm -f "$S" "$T/sparse.m" "$T/sparse.blocks" "$T/sparse.oracle"

# --- never a half-written OUT
if mount_tmpfs "$T/small" 64k; then
	OUT=$T/small/disk.img.imgcache-manifest
	printf 'old manifest\n' >"$OUT"
	expect "build onto a full filesystem fails" 2 "No space left on device" \
		-b 4K -o "$OUT" "$F"
	assert_eq "  ... the old OUT is left whole" "old manifest" "$(cat "$OUT")"
	assert_eq "  ... no .tmp left behind" "disk.img.imgcache-manifest" \
		"$(ls "$T/small")"
else
	note "cannot mount a tmpfs here (not root?): full-filesystem case skipped"
fi
expect "a template that is not there" 2 "No such file or directory" \
	-o "$T/ghost.m" "$T/ghost.img"
check "  ... writes nothing" test ! -e "$T/ghost.m"
sum=$(sha256sum <"$F")
expect "-o the template itself refused" 2 "the output is the template itself" \
	-o "$F" "$F"
assert_eq "  ... the template is intact" "$sum" "$(sha256sum <"$F")"
expect "--block-size 3000 refused" 2 "not a power of two" -b 3000 "$F"
expect "--threads 0 refused" 2 "--threads 0" -j 0 "$F"
expect "no FILE: usage" 2 "Usage:"
expect "--dump with a FILE: usage" 2 "takes no FILE" --dump "$M" "$F"
expect "--help" 0 "Usage:" --help
ls "$T/src" >"$T/src.ls"
assert_eq "no temporary files left beside the template" \
	"disk.img
disk.img.imgcache-manifest" "$(cat "$T/src.ls")"
