#!/bin/sh
# t-pin: imgcache-pin and the control socket.  A pin made with --no-fetch
# fetches nothing; pre-warming fills it (100% present, --wait exit 0);
# pinned blocks survive churn on a template 16x its quota and stay readable
# with the origin file removed; pins persist across a restart; a pin over
# quota, a bad item, a malformed profile, a non-qcow2 template are refused
# with clear messages and the right exit status; qcow2-metadata pins exactly
# the metadata clusters of a qemu-img image (checked against an independent
# reader); record -> profile -> pin on a fresh cache -> replaying the reads
# needs no origin read; the socket is 0600, other users are refused, and
# misbehaving clients (idle, endless line, too many) cannot hold the daemon.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

PIN=$top_builddir/tools/imgcache-pin
[ -x "$PIN" ] || fail "$PIN is not built (run make)"
command -v python3 >/dev/null 2>&1 || skip "python3 not installed"

MIB=1048576
make_file "$T/src/disk.img" 32 # quota 2M: 16x its quota
make_file "$T/src/boot.img" 16
cp "$T/src/disk.img" "$T/disk.copy"
cp "$T/src/boot.img" "$T/boot.copy"
HAVE_QEMU=
if command -v qemu-img >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1
then
	HAVE_QEMU=1
	# 4K clusters: 2 MiB per L2 table, so three writes far apart need
	# three L2 tables; pins are then not all whole 64K blocks.
	qemu-img create -q -f qcow2 -o cluster_size=4096 "$T/src/vm.qcow2" 64M
	qemu-io -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x22 20M 64K' \
		-c 'write -P 0x33 50M 512K' "$T/src/vm.qcow2" >/dev/null
fi
OLOG=$T/origin.log
start_originfs "$T/src" "$OLOG" "$T/omnt"

tmpl_section() { # NAME [QUOTA]
	printf '\n[template %s]\norigin = %s\n' "$1" "$T/omnt/$1"
	[ -z "${2:-}" ] || printf 'quota = %s\n' "$2"
}
{
	global_section
	tmpl_section disk.img 2M
	tmpl_section boot.img
	[ -z "$HAVE_QEMU" ] || tmpl_section vm.qcow2
} >"$T/conf"
MNT=$T/mnt

# icpin ARGS...: imgcache-pin on our cache, bounded; output in $T/out,
# exit status in $rc.
icpin() {
	rc=0
	bounded "$PIN" --cache-dir "$CACHE" "$@" >"$T/out" 2>&1 || rc=$?
}

# pct TEMPLATE RANGE: the present % --list shows for one pinned range.
pct() {
	bounded "$PIN" --cache-dir "$CACHE" --list "$1" |
		awk -v r="$2" '$2 == r { print $NF }'
}

# ranges TEMPLATE: the pinned ranges --list shows, one START-END a line.
ranges() {
	bounded "$PIN" --cache-dir "$CACHE" --list "$1" |
		awk 'NR > 1 { print $2 }'
}

start_daemon() { # CONF MNT: mount and wait for the control socket
	start_imgcache "$1" "$2"
	_sd_dir=$(awk '$1 == "cache_dir" { print $3 }' "$1")
	wait_for 10 test -S "$_sd_dir/ctl.sock" ||
		fail "no control socket $_sd_dir/ctl.sock"
}

start_daemon "$T/conf" "$MNT"

# --- 1. socket mode, --no-fetch, warm, --wait
assert_eq "control socket is mode 0600" 600 "$(stat -c %a "$CACHE/ctl.sock")"
assert_eq "cache_dir is mode 0700" 700 "$(stat -c %a "$CACHE")"
from=$(($(count_reads "$OLOG") + 1))
icpin --no-fetch disk.img 0-1M
assert_eq "pin --no-fetch exits 0 ($(cat "$T/out"))" 0 "$rc"
assert_eq "nothing printed without a terminal" "" "$(cat "$T/out")"
assert_eq "pinned, nothing fetched: 0% present" 0% "$(pct disk.img 0-1048576)"
assert_eq "--no-fetch: no origin reads" 0 \
	"$(reads_overlapping "$OLOG" /disk.img 0 "$MIB" "$from")"
icpin --wait disk.img 0-1M
assert_eq "pin --wait exits 0 ($(cat "$T/out"))" 0 "$rc"
assert_eq "after the warm: 100% present" 100% "$(pct disk.img 0-1048576)"
check "the warm read the pinned MiB from the origin" \
	test "$(reads_overlapping "$OLOG" /disk.img 0 "$MIB" "$from")" -gt 0
icpin disk.img
assert_eq "warm of existing pins (no items) exits 0" 0 "$rc"

# --- 2. refusals: over quota, bad item, malformed profile, bad template
icpin --no-fetch disk.img 4M-6M
assert_eq "pin over quota: exit 1" 1 "$rc"
check "over quota: message gives asked, pinned and quota bytes" \
	grep -Eq 'asks 2097152 bytes, 1048576 already pinned, quota 2097152' \
	"$T/out"
note "$(cat "$T/out")"
assert_eq "over quota: pins unchanged" 0-1048576 "$(ranges disk.img)"
icpin disk.img 5M-3M
assert_eq "bad range item: exit 2" 2 "$rc"
check "bad range item: one clear line" grep -q "bad pin item '5M-3M'" "$T/out"
printf '# boot\n0 64K\n1M fish\n' >"$T/bad.prof"
icpin disk.img "profile:$T/bad.prof"
assert_eq "malformed profile: exit 2" 2 "$rc"
check "malformed profile: FILE:LINE in the message ($(cat "$T/out"))" \
	grep -q "$T/bad.prof:3: " "$T/out"
icpin disk.img "profile:$T/missing.prof"
assert_eq "missing profile: exit 2" 2 "$rc"
icpin nosuch.img 0-1M
assert_eq "unknown template: exit 1" 1 "$rc"
check "unknown template: named" grep -q "no template 'nosuch.img'" "$T/out"
icpin --unpin disk.img
assert_eq "--unpin without items: usage error" 2 "$rc"
assert_eq "refusals left the pins unchanged" 0-1048576 "$(ranges disk.img)"

# --- 3. qcow2-metadata: exactly the metadata clusters
# Independent reference: read the header, L1 and refcount tables of the
# image file and list header, L1, L2, refcount table and block clusters,
# merged, cut at the end of the file.
cat >"$T/qmeta.py" <<'EOF'
import struct, sys
data = open(sys.argv[1], 'rb').read()
(magic, version, _bfo, _bfs, cbits, _size, _crypt, l1_size, l1_off, rt_off,
 rt_clusters, nb_snap, _snap_off) = struct.unpack('>IIQIIQIIQQIIQ', data[:72])
assert magic == 0x514649fb and nb_snap == 0
cs = 1 << cbits
def whole(off, n):
    return (off, off + (n + cs - 1) // cs * cs)
def u64(off):
    return struct.unpack('>Q', data[off:off + 8])[0]
r = [(0, cs), whole(l1_off, l1_size * 8), whole(rt_off, rt_clusters * cs)]
r += [whole(u64(l1_off + 8 * i) & 0x00fffffffffffe00, 1)
      for i in range(l1_size) if u64(l1_off + 8 * i) & 0x00fffffffffffe00]
r += [whole(u64(rt_off + 8 * i) & ~(cs - 1), 1)
      for i in range(rt_clusters * cs // 8) if u64(rt_off + 8 * i)]
out = []
for a, b in sorted(r):
    if out and a <= out[-1][1]:
        out[-1][1] = max(out[-1][1], b)
    else:
        out.append([a, b])
for a, b in out:
    print('%d-%d' % (a, min(b, len(data))))
EOF
if [ -n "$HAVE_QEMU" ]; then
	icpin vm.qcow2 qcow2-metadata
	assert_eq "pin qcow2-metadata exits 0 ($(cat "$T/out"))" 0 "$rc"
	python3 "$T/qmeta.py" "$T/src/vm.qcow2" >"$T/qmeta.want"
	ranges vm.qcow2 >"$T/qmeta.got"
	note "qcow2 metadata: $(tr '\n' ' ' <"$T/qmeta.want")"
	check "L2 tables apart from the header (>= 3 ranges)" \
		test "$(wc -l <"$T/qmeta.want")" -ge 3
	assert_same "qcow2-metadata pins exactly the metadata clusters" \
		"$T/qmeta.want" "$T/qmeta.got"
	assert_eq "qcow2 metadata: 100% present" 100% \
		"$(pct vm.qcow2 "$(head -n 1 "$T/qmeta.want")")"
else
	note "qemu-img/qemu-io not installed: qcow2-metadata on an image skipped"
fi
icpin disk.img qcow2-metadata
assert_eq "qcow2-metadata on a raw template: exit 1" 1 "$rc"
check "qcow2-metadata on a raw template: clear message ($(cat "$T/out"))" \
	grep -q "not a qcow2 image" "$T/out"
assert_eq "raw template: pins unchanged" 0-1048576 "$(ranges disk.img)"

# --- 4. other users: refused (connect, and the daemon's credential check)
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
	as_nobody() {
		rc=0
		bounded setpriv --reuid=65534 --regid=65534 --clear-groups \
			"$PIN" --cache-dir "$CACHE" "$@" >"$T/out" 2>&1 || rc=$?
	}
	as_nobody --no-fetch disk.img 8M+64K
	assert_eq "nobody cannot connect (cache_dir 0700): exit 1" 1 "$rc"
	note "$(cat "$T/out")"
	# Open the path up to reach the daemon's own check (SO_PEERCRED).
	chmod 0711 "$T" "$CACHE"
	chmod 0666 "$CACHE/ctl.sock"
	as_nobody --no-fetch disk.img 8M+64K
	chmod 0700 "$T" "$CACHE"
	chmod 0600 "$CACHE/ctl.sock"
	assert_eq "nobody refused by the daemon: exit 1" 1 "$rc"
	check "nobody refused: permission denied ($(cat "$T/out"))" \
		grep -q "permission denied" "$T/out"
	assert_eq "nobody pinned nothing" 0-1048576 "$(ranges disk.img)"
else
	note "not root or no setpriv: other-user refusal not tested"
fi

# --- 5. misbehaving clients: unknown verb, endless line, too many, idle
cat >"$T/client.py" <<'EOF'
import socket, sys, time
path = sys.argv[1]
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s
# Send, half-close, read to EOF: the daemon frees a connection's slot
# before it closes the socket, so at EOF the slot is free again.
def exchange(data):
    s = conn()
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the daemon hung up on an endless line: read its answer
    buf = b''
    while True:
        try:
            d = s.recv(4096)
        except OSError:
            break  # reset after the answer: the daemon did not read it all
        if not d:
            break
        buf += d
    s.close()
    return buf.decode(errors='replace').strip()
print('verb:', exchange(b'frobnicate\tdisk.img\n'))
print('long:', exchange(b'x' * (2 << 20)))
# Accepted in order: the 16 idle ones take every slot, the 17th is told.
idle = [conn() for _ in range(16)]
print('17th:', exchange(b''))
t0 = time.time()
for c in idle:
    c.recv(1)       # b'' once the daemon's read timeout closes it
print('idle closed after %.0f s' % (time.time() - t0))
EOF
bounded python3 "$T/client.py" "$CACHE/ctl.sock" >"$T/client.out" 2>&1 || true
note "$(tr '\n' ';' <"$T/client.out")"
check "unknown verb: error line" grep -q "^verb: error	unknown request" \
	"$T/client.out"
check "endless line: refused" grep -q "^long: error	request longer than" \
	"$T/client.out"
check "17th connection: too many" grep -q "^17th: error	too many connections" \
	"$T/client.out"
check "idle clients dropped by the daemon's timeout" \
	grep -q "^idle closed after" "$T/client.out"
icpin --list disk.img
assert_eq "the daemon still answers" 0 "$rc"

# --- 6. churn: 16x-quota random reads; the pinned MiB stays
before=$(count_bytes "$OLOG" /disk.img)
bounded "$RANDREAD" -d -j 4 -n 100 -b 262144 -s 3 "$MNT/disk.img" \
	"$T/disk.copy" >"$T/rr.out" 2>&1 || not_ok "random reads: $(cat "$T/rr.out")"
fetched=$(($(count_bytes "$OLOG" /disk.img) - before))
# More fetched than the quota holds: blocks had to be evicted.  (Quota
# bounds on disk are t-quota's business; st_blocks also counts ext4's
# extent tree blocks, so the engine's own figure is checked here.)
check "churn fetched $fetched bytes, more than the 2M quota" \
	test "$fetched" -gt $((2 * MIB))
assert_le "cached bytes within the 2M quota after churn" \
	"$(getfattr --only-values -n user.imgcache.cached_bytes 2>/dev/null \
		"$MNT/disk.img")" $((2 * MIB))
assert_eq "after churn: pinned MiB 100% present" 100% \
	"$(pct disk.img 0-1048576)"
from=$(($(count_reads "$OLOG") + 1))
bounded dd if="$MNT/disk.img" of="$T/pinned" bs=64K count=16 iflag=direct \
	status=none
assert_eq "after churn: pinned MiB read without origin reads" 0 \
	"$(reads_overlapping "$OLOG" /disk.img 0 "$MIB" "$from")"

# --- 7. record a profile of boot.img
boot_reads() { # MNT PREFIX: the "boot": three reads, compared with origin
	bounded dd if="$1/boot.img" of="$2.a" bs=64K count=4 iflag=direct \
		status=none
	bounded dd if="$1/boot.img" of="$2.b" bs=64K skip=48 count=1 \
		iflag=direct status=none
	bounded dd if="$1/boot.img" of="$2.c" bs=4K skip=2049 count=2 \
		iflag=direct status=none
	extract "$T/boot.copy" 0 262144 "$2.a.o"
	extract "$T/boot.copy" $((3 * MIB)) 65536 "$2.b.o"
	extract "$T/boot.copy" $((2049 * 4096)) 8192 "$2.c.o"
	for _br in a b c; do
		assert_same "boot read $_br equals origin" "$2.$_br" "$2.$_br.o"
	done
}
covers() { # PROFILE START LEN: one profile line covers [START, START+LEN)
	awk -v a="$2" -v b=$(($2 + $3)) \
		'!/^#/ && NF == 2 && $1 <= a && $1 + $2 >= b { f = 1 }
		 END { exit !f }' "$1"
}
rc=0
bounded "$PIN" --cache-dir "$CACHE" --record 3 --output "$T/boot.prof" \
	boot.img >"$T/rec.out" 2>&1 &
REC=$!
wait_for 10 grep -q "recording reads of boot.img" "$IMGCACHE_LOG" ||
	fail "the recording did not start"
boot_reads "$MNT" "$T/rec"
wait "$REC" || rc=$?
assert_eq "--record exits 0 ($(cat "$T/rec.out"))" 0 "$rc"
check "no temporary file left" test ! -e "$T/boot.prof.tmp"
note "profile: $(grep -v '^#' "$T/boot.prof" | tr '\n' ';')"
check "profile covers read a" covers "$T/boot.prof" 0 262144
check "profile covers read b" covers "$T/boot.prof" $((3 * MIB)) 65536
check "profile covers read c" covers "$T/boot.prof" $((2049 * 4096)) 8192

# --- 8. restart with the origin file gone: pins persist and are served
stop_imgcache "$MNT"
mv "$T/src/disk.img" "$T/disk.gone"
start_daemon "$T/conf" "$MNT"
assert_eq "after restart: the pin is still there" 0-1048576 "$(ranges disk.img)"
assert_eq "after restart: 100% present" 100% "$(pct disk.img 0-1048576)"
bounded dd if="$MNT/disk.img" of="$T/pinned2" bs=64K count=16 iflag=direct \
	status=none || not_ok "reading the pinned MiB with the origin gone failed"
extract "$T/disk.copy" 0 "$MIB" "$T/pinned.o"
assert_same "origin gone: pinned MiB equals origin bytes" "$T/pinned2" \
	"$T/pinned.o"
icpin --wait disk.img 30M-31M
assert_eq "origin gone: --wait on a new pin exits 1" 1 "$rc"
check "origin gone: says what could not be fetched ($(cat "$T/out"))" \
	grep -q "bytes of pinned blocks could not be fetched" "$T/out"
icpin --unpin disk.img 30M-31M
assert_eq "unpin exits 0" 0 "$rc"
assert_eq "unpin leaves the first pin" 0-1048576 "$(ranges disk.img)"
stop_imgcache "$MNT"
ok "daemon stops cleanly with the control socket up"
check "control socket removed at stop" test ! -e "$CACHE/ctl.sock"

# --- 9. fresh cache: pin the profile, replay the boot: no origin reads
# Readahead off: it fetches past the profile by design (speculation on a
# sequential reader); what is measured is that the boot's own reads need
# nothing from the origin.
CACHE=$T/cache2
{
	global_section
	printf 'readahead = 0\n'
	tmpl_section boot.img
} >"$T/conf2"
start_daemon "$T/conf2" "$T/mnt2"
icpin --wait boot.img "profile:$T/boot.prof"
assert_eq "pin --wait from the profile exits 0 ($(cat "$T/out"))" 0 "$rc"
from=$(($(count_reads "$OLOG") + 1))
boot_reads "$T/mnt2" "$T/replay"
assert_eq "replaying the boot: zero origin reads" 0 \
	"$(reads_overlapping "$OLOG" /boot.img 0 $((16 * MIB)) "$from")"
stop_imgcache "$T/mnt2"

# --- 10. config pins follow "pin =" across reloads: a range dropped from
# the config is unpinned, one added is pinned, a tool pin is left alone.
CACHE=$T/cache3
write_conf3() { # PIN-VALUE
	{
		global_section
		tmpl_section boot.img
		[ -z "$1" ] || printf 'pin = %s\n' "$1"
	} >"$T/conf3"
}
# n_reloaded: how many reloads the daemon has logged.
n_reloaded() { grep -c 'reloaded' "$IMGCACHE_LOG" || true; }
# reload_to PIN-VALUE: rewrite the config, SIGHUP, wait for the reload.
reload_to() {
	_before=$(n_reloaded)
	write_conf3 "$1"
	kill -HUP "$(_pid_of "$T/mnt3")"
	wait_for 10 reloaded_after "$_before" ||
		fail "no reload logged after SIGHUP"
}
write_conf3 0-1M
start_daemon "$T/conf3" "$T/mnt3"
reloaded_after() { [ "$(n_reloaded)" -gt "$1" ]; }
ranges_are() { [ "$(ranges "$1")" = "$2" ]; }
# Config pins are applied once the mount is up: wait for them.
wait_for 10 ranges_are boot.img 0-1048576 || true
assert_eq "config pin listed" 0-1048576 "$(ranges boot.img)"
icpin --no-fetch boot.img 8M-9M
assert_eq "tool pin beside the config pin exits 0" 0 "$rc"
reload_to 2M-3M
# The reload's config pins are applied after it, in the background.
wait_for 10 ranges_are boot.img "$(printf '2097152-3145728\n8388608-9437184')" ||
	true
assert_eq "reload: the dropped config range is unpinned, the new one pinned, the tool pin kept" \
	"2097152-3145728 8388608-9437184" "$(ranges boot.img | tr '\n' ' ' | sed 's/ $//')"
reload_to ""
wait_for 10 ranges_are boot.img 8388608-9437184 || true
assert_eq "reload with an empty pin list: only the tool pin is left" \
	8388608-9437184 "$(ranges boot.img)"
stop_imgcache "$T/mnt3"
