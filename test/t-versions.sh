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
#  4. A lasting lie (HEAD says one version, every GET another) costs
#     bounded time, threads and origin requests, and heals when it ends.
#  5. Opens never fail while a file origin changes all the time.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http

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

# mixcheck FILE SWITCH ORDER: the python driver of case 1 (see its
# comments), run on FILE of the mount; SWITCH is the shell command that
# changes the origin; ORDER "miss": fd7's read of an uncached range meets
# the change before fd8 is opened, "open": fd8's open finds it first.
# The uncached range is at 24 MiB: beyond fd7's first MiB and the 16 MiB
# readahead window (the default), so nothing fetched it before the change.
mixcheck() {
	bounded python3 - "$1" "$T/v1" "$T/v2" "$2" "$3" <<'PYEOF'
import os, subprocess, sys
path, v1p, v2p, switch, order = sys.argv[1:6]
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
# generation 1's validator), or the next open's check sees it first.
if order == "open":
    fd8 = os.open(path, os.O_RDONLY)
old_or_eio(fd7, 24 * MIB, MIB, "fd7 after the change, uncached range")
if order != "open":
    fd8 = os.open(path, os.O_RDONLY)
say(os.fstat(fd7).st_ino != os.fstat(fd8).st_ino,
    "fd7 and fd8 are handles of two inodes")
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
fd = os.open(path, os.O_RDONLY)
say(os.stat(path).st_ino == os.fstat(fd).st_ino,
    "stat of the name and a new handle agree on the inode")
os.close(fd)
sys.exit(bad)
PYEOF
}

# --- 1a. HTTP, strong ETag, same size and Last-Modified, revalidate 60s:
# the change is found by a range request's If-Match (412).
global_section >"$T/conf"
printf 'revalidate = 60s\n\n[template sw.img]\norigin = %s/sw/sw.img\n' \
	"$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
if mixcheck "$MNT/sw.img" "echo 2 >'$T/switch'" miss; then
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
if mixcheck "$MNT/sw.img" "echo 2 >'$T/switch'" open; then
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
	touch -r '$T/stamp' '$T/src/f.img'" open; then
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
printf 'revalidate = 0\n' >>"$T/conf" # every open asks the origin
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
	assert_eq "3: $fault: the read that met it succeeded" 0 "$rc"
	extract "$T/v1" $((off * MIB)) "$MIB" "$T/want"
	assert_same "3: $fault: ... with the right bytes" "$T/part" "$T/want"
	# healed: the next read of a new range works, without restart
	healed() {
		dd if="$MNT/h.img" of="$T/part" bs=64K skip=$(((off + 2) * 16)) \
			count=16 iflag=direct status=none 2>/dev/null
	}
	check "3: $fault: the next read of another range works" healed
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

# --- 4. a lasting lie: HEAD says v1, every range GET says 412.  Reads fail
# in bounded time, hold no thread for long (another template stays fast),
# the origin is asked a bounded number of times, and reads heal once the
# lie ends.
rm -rf "$CACHE"
echo 1 >"$T/switch"
global_section | sed 's/^origin_timeout = .*/origin_timeout = 6s/' >"$T/conf"
printf 'readahead = 0\n' >>"$T/conf"
printf '\n[template lie.img]\norigin = %s/sw/lie.img\n' "$URL" >>"$T/conf"
printf '\n[template good.img]\norigin = %s/ok/good.img\n' "$URL" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
echo '412!' >"$T/fault"
from=$(($(wc -l <"$T/S.log") + 1))
t0=$(now_ms)
readers=
for i in 1 2 3 4 5 6 7 8; do
	(
		s=$(now_ms)
		if dd if="$MNT/lie.img" of=/dev/null bs=64K skip=$((i * 32)) \
			count=1 iflag=direct status=none 2>/dev/null; then
			echo "ok $(($(now_ms) - s))"
		else
			echo "eio $(($(now_ms) - s))"
		fi >"$T/lie.$i"
	) &
	readers="$readers $!"
done
sleep 1 # the readers are in the lie by now; what follows must not wait
g0=$(now_ms)
bounded dd if="$MNT/good.img" of="$T/good" bs=1M count=2 iflag=direct \
	status=none
gms=$(($(now_ms) - g0))
# shellcheck disable=SC2086 # a list of pids
wait $readers
extract "$T/v1" 0 $((2 * MIB)) "$T/want"
assert_same "4: another template reads right during the lie" "$T/good" "$T/want"
assert_le "4: ... and fast (ms; 64 FUSE threads not all held)" "$gms" 3000
n_eio=$(cat "$T"/lie.* | grep -c '^eio' || true)
assert_eq "4: the 8 readers of the lying template got EIO" 8 "$n_eio"
worst=$(cat "$T"/lie.* | awk '$2 > m { m = $2 } END { print m + 0 }')
assert_le "4: ... each within origin_timeout + 3 s (ms)" "$worst" 9000
# what the lie cost the origin, from its access log
gets=$(awk -v f="$from" 'NR >= f && $1 == "GET" && $2 ~ /lie.img/' \
	"$T/S.log" | wc -l)
heads=$(awk -v f="$from" 'NR >= f && $1 == "HEAD" && $2 ~ /lie.img/' \
	"$T/S.log" | wc -l)
note "during the lie ($(($(now_ms) - t0)) ms): $gets GETs, $heads HEADs"
assert_le "4: range GETs to the lying origin stay bounded" "$gets" 40
assert_le "4: HEAD rechecks stay bounded (one a second at most)" \
	"$heads" 12
rm -f "$T/fault"
lie_healed() {
	dd if="$MNT/lie.img" of="$T/part" bs=64K skip=32 count=1 \
		iflag=direct status=none 2>/dev/null
}
check "4: the lie over, reads work again within 10 s" wait_for 10 lie_healed
extract "$T/v1" $((32 * 65536)) 65536 "$T/want"
assert_same "4: ... with the right bytes" "$T/part" "$T/want"
stop_imgcache "$MNT"

# xattr_ok FILE: the generation xattr of FILE answers (no ENODATA/ESTALE).
xattr_ok() {
	getfattr --absolute-names --only-values -n user.imgcache.generation \
		"$1" >/dev/null
}

# --- 5. a file origin changing all the time: opens never fail (an open of
# the superseded inode is retried by the kernel on the new one), each read
# returns one version, and the xattrs of a new inode answer at once.
rm -rf "$CACHE"
make_file_bytes "$T/src/c.img" 65536
global_section >"$T/conf"
printf '\n[template c.img]\norigin = %s\n' "$T/src/c.img" >>"$T/conf"
start_imgcache "$T/conf" "$MNT"
(
	i=0
	while [ ! -e "$T/stop-flip" ] && [ $i -lt 2000 ]; do
		touch -d "@$((1600000000 + i % 2))" "$T/src/c.img"
		i=$((i + 1))
		sleep 0.02
	done
) &
flipper=$!
bounded python3 - "$MNT/c.img" "$T/src/c.img" <<'PYEOF' >"$T/flip.out"
import errno, os, sys, time
path, src = sys.argv[1:3]
want = open(src, "rb").read()
end = time.monotonic() + 3
opens = bad_open = bad_bytes = eio = 0
while time.monotonic() < end:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        bad_open += 1
        print("open failed: %s" % e)
        continue
    opens += 1
    try:
        got = os.pread(fd, 65536, 0)
        bad_bytes += got != want
    except OSError as e:
        eio += e.errno == errno.EIO  # the origin changed mid-fill: allowed
    os.close(fd)
print("opens %d bad_open %d bad_bytes %d eio %d" % (opens, bad_open,
                                                     bad_bytes, eio))
PYEOF
touch "$T/stop-flip"
wait "$flipper" || true
note "$(tail -n 1 "$T/flip.out")"
set -- $(tail -n 1 "$T/flip.out")
assert_le "5: the origin changed under many opens" 20 "$2"
assert_eq "5: no open failed while the origin changed" 0 "$4"
assert_eq "5: no read returned other bytes" 0 "$6"
check "5: a generation xattr answers right after a change" \
	xattr_ok "$MNT/c.img"
touch -d '@1500000000' "$T/src/c.img"
cat "$MNT/c.img" >/dev/null
check "5: ... and after another one" xattr_ok "$MNT/c.img"
stop_imgcache "$MNT"
stop_faultsrv S
