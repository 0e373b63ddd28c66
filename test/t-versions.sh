#!/bin/sh
# t-versions: every byte a template's file returns belongs to one version of
# the origin, whatever the kernel caches (issue 12, cases 1-3).
#  1. Old and new generations never mix through the kernel page cache: a
#     long-lived buffered handle on generation 1 keeps reading after the
#     origin changed, while new handles read generation 2 (HTTP origin
#     with a strong ETag; a file origin rewritten in place, mtime restored).
#  2. An HTTP origin without a strong ETag is warned about once at start;
#     require_strong_etag = yes refuses it.
#  3. One bad answer (412, 416, another total size, another ETag, a refused
#     connection) does not poison a generation: reads heal by themselves.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY \
	no_proxy NO_PROXY

MIB=1048576
make_file "$T/v1" 32
# v2: every byte inverted (what faultsrv's sw/ mode serves as version 2)
python3 -c 'import sys
d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(d.translate(bytes(range(255, -1, -1))))' \
	"$T/v1" "$T/v2"
echo 1 >"$T/switch"
start_faultsrv S "$T/v1" --switch-file "$T/switch" --fault-file "$T/fault"
URL=http://127.0.0.1:$PORT
MNT=$T/mnt

# mixcheck FILE: the python driver of case 1 (see its comments), run on
# FILE of the mount; SWITCH is the shell command that changes the origin.
mixcheck() {
	bounded python3 - "$1" "$T/v1" "$T/v2" "$2" <<'PYEOF'
import os, subprocess, sys
path, v1p, v2p, switch = sys.argv[1:5]
v1 = open(v1p, "rb").read()
v2 = open(v2p, "rb").read()
MIB = 1 << 20
bad = 0

def say(ok, what):
    global bad
    print(("ok - " if ok else "not ok - ") + what)
    bad |= not ok

def old_or_eio(fd, off, n, what):
    """A read through an old handle: generation 1's bytes, or EIO."""
    try:
        got = os.pread(fd, n, off)
    except OSError as e:
        say(e.errno == 5, what + ": EIO (%s)" % e)
        return
    say(got == v1[off:off + len(got)] and len(got) > 0,
        what + ": only generation 1's bytes")

# A long-lived buffered reader on generation 1.
fd7 = os.open(path, os.O_RDONLY)
say(os.pread(fd7, MIB, 0) == v1[:MIB], "fd7 reads generation 1")
subprocess.run(["sh", "-c", switch], check=True)
# A miss through fd7 meets the changed origin (its range request carries
# generation 1's validator) -- or, for a file origin, the next open sees it.
old_or_eio(fd7, 24 * MIB, MIB, "fd7 after the change, uncached range")
fd8 = os.open(path, os.O_RDONLY)
# fd7's pages go back to the daemon, which serves generation 1's cached
# blocks: they must not land where fd8 can see them.
os.posix_fadvise(fd7, 0, 0, os.POSIX_FADV_DONTNEED)
old_or_eio(fd7, 0, MIB, "fd7 after fd8's open, cached range")
got = b""
while True:
    b = os.read(fd8, 4 * MIB)
    if not b:
        break
    got += b
say(got == v2, "fd8 (opened after the change) reads only generation 2")
old_or_eio(fd7, 0, 2 * MIB, "fd7 again after fd8's reads")
os.close(fd7)
os.close(fd8)
with open(path, "rb") as f:
    say(f.read() == v2, "a fresh buffered open reads generation 2")
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 4 * MIB)
out = b""
off = 0
while True:
    n = os.preadv(fd, [buf], off)
    if n <= 0:
        break
    out += buf[:n]
    off += n
os.close(fd)
say(out == v2, "an O_DIRECT open reads generation 2")
s1, s2 = os.stat(path), os.fstat(os.open(path, os.O_RDONLY))
say(s1.st_ino == s2.st_ino, "stat and a new handle agree on the inode")
sys.exit(bad)
PYEOF
}

# --- 1a. HTTP, strong ETag, same size and Last-Modified, revalidate 60s:
# the change is found by a range request's If-Match (412).
global_section >"$T/conf"
printf 'revalidate = 60s\n\n[template sw.img]\norigin = %s/sw/sw.img\n' \
	"$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
if mixcheck "$MNT/sw.img" "echo 2 >'$T/switch'"; then
	ok "1a: http: generations never mix (revalidate 60s, 412)"
else
	not_ok "1a: http: generations mixed"
	show_log "$IMGCACHE_LOG"
fi
stop_imgcache "$MNT"

# --- 1b. The same with revalidate = 0: the change is found by an open.
rm -rf "$CACHE"
echo 1 >"$T/switch"
global_section >"$T/conf"
printf 'revalidate = 0\n\n[template sw.img]\norigin = %s/sw/sw.img\n' \
	"$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
if mixcheck "$MNT/sw.img" "echo 2 >'$T/switch'"; then
	ok "1b: http: generations never mix (revalidate 0, found at open)"
else
	not_ok "1b: http: generations mixed"
	show_log "$IMGCACHE_LOG"
fi
stop_imgcache "$MNT"

# --- 1c. A file origin rewritten in place with its mtime restored: only
# ctime shows the change.
rm -rf "$CACHE"
mkdir -p "$T/src"
cp "$T/v1" "$T/src/f.img"
touch -d '2020-01-01 00:00:00' "$T/src/f.img"
global_section >"$T/conf"
printf '\n[template f.img]\norigin = %s\n' "$T/src/f.img" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
if mixcheck "$MNT/f.img" "touch -r '$T/src/f.img' '$T/stamp' &&
	dd if='$T/v2' of='$T/src/f.img' bs=1M conv=notrunc status=none &&
	touch -r '$T/stamp' '$T/src/f.img'"; then
	ok "1c: file origin rewritten in place: generations never mix"
else
	not_ok "1c: file origin: generations mixed"
	show_log "$IMGCACHE_LOG"
fi
stop_imgcache "$MNT"

# --- 2. validators that cannot see every change
rm -rf "$CACHE"
echo 1 >"$T/switch"
global_section >"$T/conf"
printf '\n[template lm.img]\norigin = %s/swlm/lm.img\n' "$URL" >>"$T/conf"
printf '\n[template weak.img]\norigin = %s/weak/weak.img\n' "$URL" >>"$T/conf"
printf '\n[template strong.img]\norigin = %s/sw/strong.img\n' "$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
n=$(grep -c 'lm.img.*no strong ETag' "$IMGCACHE_LOG" || true)
assert_eq "2: a Last-Modified-only origin is warned about once" 1 "$n"
n=$(grep -c 'weak.img.*no strong ETag' "$IMGCACHE_LOG" || true)
assert_eq "2: a weak-ETag origin is warned about once" 1 "$n"
n=$(grep -c 'strong.img.*no strong ETag' "$IMGCACHE_LOG" || true)
assert_eq "2: a strong-ETag origin is not warned about" 0 "$n"
bounded cat "$MNT/lm.img" >/dev/null
bounded cat "$MNT/lm.img" >/dev/null
n=$(grep -c 'lm.img.*no strong ETag' "$IMGCACHE_LOG" || true)
assert_eq "2: ... and only once, opens and reads notwithstanding" 1 "$n"
stop_imgcache "$MNT"

rm -rf "$CACHE"
global_section >"$T/conf"
printf 'require_strong_etag = yes\n' >>"$T/conf"
printf '\n[template lm.img]\norigin = %s/swlm/lm.img\n' "$URL" >>"$T/conf"
printf '\n[template strong.img]\norigin = %s/sw/strong.img\n' "$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
check "2: require_strong_etag: a Last-Modified-only template is refused" \
	test ! -e "$MNT/lm.img"
check "2: ... with a message naming it and why" \
	grep -q 'lm.img.*require_strong_etag' "$IMGCACHE_LOG"
check "2: ... and a strong-ETag template is served" \
	cmp -s "$MNT/strong.img" "$T/v1"
stop_imgcache "$MNT"

# --- 3. one bad answer heals (revalidate = 0: a real change is seen at
# the next open, as the last check wants)
rm -rf "$CACHE"
echo 1 >"$T/switch"
global_section >"$T/conf"
printf 'readahead = 0\nrevalidate = 0\n\n[template h.img]\norigin = %s/sw/h.img\n' \
	"$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
i=0
for fault in 412 416 total etag refuse; do
	off=$((i * 4))
	i=$((i + 1))
	echo "$fault" >"$T/fault"
	rc=0
	bounded dd if="$MNT/h.img" of="$T/part" bs=64K skip=$((off * 16)) \
		count=16 iflag=direct status=none 2>"$T/dd.err" || rc=$?
	check "3: $fault: the fault was served" test ! -e "$T/fault"
	if [ "$rc" = 0 ]; then
		extract "$T/v1" $((off * MIB)) "$MIB" "$T/want"
		assert_same "3: $fault: the read that met it got the right bytes" \
			"$T/part" "$T/want"
	fi
	# healed: the next read of a new range works, without restart
	healed() {
		dd if="$MNT/h.img" of="$T/part" bs=64K skip=$(((off + 2) * 16)) \
			count=16 iflag=direct status=none 2>/dev/null
	}
	check "3: $fault: reads work again within 10 s" wait_for 10 healed
	extract "$T/v1" $(((off + 2) * MIB)) "$MIB" "$T/want"
	assert_same "3: $fault: ... with the right bytes" "$T/part" "$T/want"
done
gen=$(getfattr --only-values -n user.imgcache.generation "$MNT/h.img" \
	2>/dev/null || echo "?")
assert_eq "3: the transient faults started no new generation" 1 "$gen"
assert_same "3: the whole file reads back exactly" "$MNT/h.img" "$T/v1"
# a real change after all that: a new generation, pure version 2
echo 2 >"$T/switch"
assert_same "3: a real change is still a new generation (v2)" \
	"$MNT/h.img" "$T/v2"
stop_imgcache "$MNT"
stop_faultsrv S
