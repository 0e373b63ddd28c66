#!/bin/bash
# shellcheck disable=SC2317 # functions are called indirectly (trap, wait_for)
# update.sh BUILD_DIR — `make bench-update`: what a new template version
# costs with block manifests (issue 15).  Figures, not tests: nothing here
# fails on a slow figure (BENCH_UPDATE_SMOKE=1, run by make check, exits 1
# only when bytes differ from the origin's or a figure is missing).
#
# Templates made of real content:
#   v1  an ext4 image (mkfs.ext4 -d) of real files of this machine
#       (/usr/lib, /usr/share: about 70% of BENCH_UPDATE_SIZE), converted
#       with qemu-img convert -O qcow2 (64K clusters);
#   v2  a monthly update of v1: a copy of its raw image with about 3% of
#       its files' bytes rewritten in place (their ext4 blocks, found with
#       debugfs) and 1.5% of new files added (debugfs write), converted
#       again: clusters after the new data move to other offsets, as
#       qemu-img convert of a changed raw image does;
#   b   another template built from v1: v1's raw image with one Debian
#       package's files added (about 3%), converted;
#   c   (only for the sharing figures) a fresh mkfs.ext4 -d of v1's tree
#       plus that package: the same files, laid out anew.
# Manifests by tools/imgcache-manifest.  The working set: about
# BENCH_UPDATE_WS% (10) of v1's files' bytes, files read whole, turned into
# the host reads a qcow2 reader makes (header, L1, each L2 table once, the
# data clusters; update.py trace), replayed O_DIRECT with test/bench/replay
# and compared with the origin's bytes (replay -c).
#
# Phases (HTTP origin on a local nginx; origin bytes from its access log):
#   1. v1's working set read cold; v2 published (manifest, then the
#      template renamed into place, as an operator does); v2's working set
#      read: origin bytes vs the bytes of its blocks whose content is not
#      among v1's cached ones + the manifest (target <= 1.05), bytes copied
#      from local copies (user.imgcache.local_bytes, imgcache-report --json);
#   2. b's working set (v1's files plus the package's): origin bytes vs
#      its blocks not cached yet + manifest, local bytes;
#      1 and 2 run twice, each with an empty cache: readahead on (the
#      default: it also fetches or copies blocks past the files read) and
#      readahead = 0 (the working set exactly);
#   3. cost: cold sequential read of v1 (dd bs=1M, origin in the page
#      cache, empty cache) with its manifest and with manifest = none,
#      alternated, BENCH_UPDATE_ROUNDS (3) rounds each, a new daemon and
#      cache each time: MiB/s, the daemon's CPU-seconds per GiB
#      (/proc/PID/stat); target >= 0.9;
#   4. a BENCH_UPDATE_SPARSE (100G) sparse template with scattered data
#      blocks and its manifest: the daemon's VmRSS / VmHWM after reading
#      scattered blocks, against the same without the manifest;
#   and 64K blocks shared between the images, at the same offset and at
#   other offsets (update.py share).
#
# Environment:
#   BENCH_UPDATE_SIZE=1G     raw image size of v1 (K/M/G)
#   BENCH_UPDATE_WS=10       working set, % of v1's files' bytes
#   BENCH_UPDATE_ROUNDS=3    cost rounds of each kind
#   BENCH_UPDATE_SPARSE=100G sparse template of phase 4; 0: no phase 4
#   BENCH_UPDATE_DIR=/var/tmp parent of the temporary directory
#   BENCH_UPDATE_TIMEOUT=600 limit for any one command reading a mount
#   BENCH_UPDATE_MD=PATH     also write the table as markdown
#   BENCH_UPDATE_KEEP=1      keep the temporary directory
#   BENCH_UPDATE_SMOKE=1     tiny: 48M image, 1 round, a 2G sparse template
BENCH_HERE=$(cd "$(dirname "$0")" && pwd) # before any cd
# shellcheck source=test/bench/figures.sh
. "$BENCH_HERE/figures.sh"
set -u -o pipefail
export LC_ALL=C

B=$(cd "${1:-.}" && pwd)
S=$(cd "$(dirname "$0")/../.." && pwd)
top_builddir=$B top_srcdir=$S
export top_builddir top_srcdir
REPLAY=$B/test/bench/replay
MANIFEST=$B/tools/imgcache-manifest
REPORT=$B/tools/imgcache-report
PY=$S/test/bench/update.py
SMOKE=${BENCH_UPDATE_SMOKE:-}
log() { echo "update: $*" >&2; }
for x in "$B/fs/imgcache" "$REPLAY" "$MANIFEST" "$REPORT"; do
	[ -x "$x" ] || {
		echo "update: $x is not built (run make bench-update)" >&2
		exit 1
	}
done
if ! [ -c /dev/fuse ] || ! command -v fusermount3 >/dev/null 2>&1; then
	echo "update: needs /dev/fuse and fusermount3 (package fuse3)" >&2
	exit 1
fi
for c in mkfs.ext4 debugfs qemu-img python3 curl; do
	command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
	command -v "$c" >/dev/null 2>&1 || {
		echo "update: needs $c (e2fsprogs, qemu-utils, python3, curl)" >&2
		exit 1
	}
done

TMPDIR=${BENCH_UPDATE_DIR:-/var/tmp}
# shellcheck disable=SC2034 # read by lib.sh
KEEP_TMP=${BENCH_UPDATE_KEEP:-}
export TMPDIR
# shellcheck source=test/lib.sh
. "$S/test/lib.sh"
set +e
require_local_http
[ -x "$NGINX" ] || {
	echo "update: needs nginx (apt-get install nginx-light)" >&2
	exit 1
}
# shellcheck disable=SC2034 # read by lib.sh (bounded)
T_TIMEOUT=${BENCH_UPDATE_TIMEOUT:-600}
tobytes() {
	awk -v s="$1" 'BEGIN { n = s + 0; u = toupper(substr(s, length(s)))
		if (u == "K") n *= 1024; else if (u == "M") n *= 1048576
		else if (u == "G") n *= 1073741824; printf "%.0f\n", n }'
}
if [ -n "$SMOKE" ]; then
	SIZE=$(tobytes "${BENCH_UPDATE_SIZE:-48M}")
	ROUNDS=${BENCH_UPDATE_ROUNDS:-1}
	SPARSE=$(tobytes "${BENCH_UPDATE_SPARSE:-2G}")
	NSCATTER=32
else
	SIZE=$(tobytes "${BENCH_UPDATE_SIZE:-1G}")
	ROUNDS=${BENCH_UPDATE_ROUNDS:-3}
	SPARSE=$(tobytes "${BENCH_UPDATE_SPARSE:-100G}")
	NSCATTER=256
fi
BS=65536

ROWS=$T/rows.tsv
NOTES=$T/notes
REMARKS=$T/remarks
: >"$ROWS"
: >"$NOTES"
BAD=0 # bytes differed, or a figure is missing (smoke fails on it)
BYTES_EXACT="yes: every byte read through the mount equal to the origin's (replay -c, cmp)"
exact_failed() {
	BYTES_EXACT="NO: $1"
	BAD=1
}

# ------------------------------------------------------------ results

mib() { fmt "$(awk -v b="$1" 'BEGIN { print b / 1048576 }')" 2; }


print_table() {
	echo "imgcache bench-update: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine: $(nproc) CPUs, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB RAM, kernel $(uname -r)"
	echo "images: $IMAGES_DESC"
	echo "working set: $WS_DESC"
	echo "load average: $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "bytes exact: $BYTES_EXACT"
	echo
	print_figures
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
CAN_DROP=
if [ -w /proc/sys/vm/drop_caches ]; then CAN_DROP=1; fi
IMAGES_DESC="(not built)"
WS_DESC="(none)"
die() {
	log "$*"
	remark "stopped early: $*"
	BAD=1
	print_table
	exit 1
}

# ------------------------------------------------------------ images

I=$T/img
W=$T/www
mkdir -p "$I" "$W"
t_img0=$EPOCHREALTIME
log "choosing real files of this machine for a $((SIZE >> 20)) MiB image"
python3 "$PY" pick "$SIZE" 15 "$I" >"$I/pick.out" 2>"$I/pick.err" ||
	die "update.py pick: $(tail -n 1 "$I/pick.err")"
if ! [ -s "$I/base" ] || ! [ -s "$I/ws" ]; then
	die "no files chosen: $(cat "$I/pick.out")"
fi
remark "files: $(cat "$I/pick.out"); package added to b and c: $(cat "$I/pkgname")."

# Every file is staged once (hard links: files of this machine come and
# go while other work installs packages), and the images are made from
# the staged copies.
TREE=$T/tree    # v1's tree, then c's
EXTRA=$T/extra  # the package's and v2's new files
# mkfs_tree RAW: an ext4 image of SIZE bytes of TREE; fixed UUID, hash
# seed and time, so that the same tree gives the same image.
FIXED_UUID=1ae5c0de-0015-4d0c-9e15-000000000015
mkfs_tree() {
	E2FSPROGS_FAKE_TIME=1764547200 mkfs.ext4 -q -F -b 4096 -m 0 -d "$TREE" \
		-U "$FIXED_UUID" -E "root_owner=0:0,hash_seed=$FIXED_UUID" \
		"$1" "$((SIZE / 1024))k" >"$1.mkfs" 2>&1 || {
		cat "$1.mkfs" >&2
		return 1
	}
}
# debugfs_add RAW LIST DIR: write the listed files into RAW (debugfs -w),
# under DIR ("" = at their own paths, making the directories on the way).
debugfs_add() {
	EXTRA=$EXTRA python3 - "$2" "$3" >"$1.add" <<'PY' || return 1
import os, sys
lst, d = sys.argv[1], sys.argv[2]
seen = set()
for i, p in enumerate(l.strip() for l in open(lst) if l.strip()):
    dst = "%s/%d_%s" % (d, i, os.path.basename(p)) if d else p
    parts = os.path.dirname(dst).split("/")
    for k in range(2, len(parts) + 1):
        q = "/".join(parts[:k])
        if q not in seen:
            seen.add(q)
            print("mkdir " + q)
    print("write %s%s %s" % (os.environ["EXTRA"], p, dst))
PY
	E2FSPROGS_FAKE_TIME=1767225600 debugfs -w -f "$1.add" "$1" >"$1.add.out" 2>&1 ||
		return 1
}
to_qcow2() {
	qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$1" "$2" >"$2.err" 2>&1 ||
		{
			cat "$2.err" >&2
			return 1
		}
}

python3 "$PY" stage "$I/base" "$TREE" || die "staging v1's files failed"
python3 "$PY" stage "$I/pkg" "$EXTRA" || die "staging the package's files failed"
python3 "$PY" stage "$I/new" "$EXTRA" || die "staging v2's new files failed"
# The working set and the rewritten files: of those staged.
for l in ws changed; do
	grep -Fxf "$I/base" "$I/$l" >"$I/$l.tmp"
	mv "$I/$l.tmp" "$I/$l"
done
log "v1: mkfs.ext4 -d of $(wc -l <"$I/base") files, qemu-img convert"
mkfs_tree "$I/v1.raw" || die "mkfs.ext4 of v1 failed"
log "v2: ~3% of v1's files rewritten in place, new files added"
cp --sparse=always "$I/v1.raw" "$I/v2.raw"
python3 "$PY" blocks "$I/v2.raw" "$I/changed" "$I/changed.blocks" ||
	die "debugfs blocks of the changed files failed"
python3 "$PY" rewrite "$I/v2.raw" "$I/changed.blocks" 16 || die "rewrite failed"
debugfs_add "$I/v2.raw" "$I/new" /srv/update || die "debugfs write of v2's new files failed"
log "b: v1 + one package's files; c: a fresh mkfs of v1's tree + that package"
cp --sparse=always "$I/v1.raw" "$I/b.raw"
debugfs_add "$I/b.raw" "$I/pkg" "" || die "debugfs write of b's package failed"
python3 "$PY" stage "$I/pkg" "$TREE" "$EXTRA" || die "staging c's tree failed"
mkfs_tree "$I/c.raw" || die "mkfs.ext4 of c failed"
# Hard links to the machine's files: removed, never written.
rm -rf "$TREE" "$EXTRA"
for v in v2 b; do
	e2fsck -fn "$I/$v.raw" >"$I/$v.fsck" 2>&1 ||
		remark "e2fsck -fn $v.raw: $(grep -v '^Pass\|^e2fsck' "$I/$v.fsck" | head -n 1)"
done
for v in v1 v2 b c; do
	to_qcow2 "$I/$v.raw" "$I/$v.qcow2" || die "qemu-img convert of $v failed"
done
t_img1=$EPOCHREALTIME
for v in v1 v2 b; do
	"$MANIFEST" -o "$I/$v.qcow2.imgcache-manifest" "$I/$v.qcow2" \
		>"$I/$v.manifest.out" 2>&1 || die "imgcache-manifest $v: $(tail -n 1 "$I/$v.manifest.out")"
done
remark "imgcache-manifest of v1: $(sed -n 's/.*blocks of [0-9]* (\([0-9]* all-zero\)), \(.*\): wrote.*/\1, \2/p' "$I/v1.manifest.out")."
MSIZE2=$(stat -c %s "$I/v2.qcow2.imgcache-manifest")
MSIZEB=$(stat -c %s "$I/b.qcow2.imgcache-manifest")
IMAGES_DESC="v1 $(stat -c %s "$I/v1.qcow2") B qcow2 of a $((SIZE >> 20)) MiB ext4 ($(wc -l <"$I/base") real files, $(sed -n 's/.*base [0-9]* files \([0-9]*\) bytes.*/\1/p' "$I/pick.out") bytes); v2 $(stat -c %s "$I/v2.qcow2") B; b $(stat -c %s "$I/b.qcow2") B; c $(stat -c %s "$I/c.qcow2") B; built in $(awk -v a="$t_img0" -v b="$t_img1" 'BEGIN { printf "%.0f", b - a }') s"

# Working sets: the chosen files in each image (b: and the package's),
# as host reads.
python3 "$PY" blocks "$I/v1.raw" "$I/ws" "$I/ws1.blocks" || die "debugfs blocks (v1 ws)"
python3 "$PY" blocks "$I/v2.raw" "$I/ws" "$I/ws2.blocks" || die "debugfs blocks (v2 ws)"
cat "$I/ws" "$I/pkg" >"$I/wsb"
python3 "$PY" blocks "$I/b.raw" "$I/wsb" "$I/wsb.blocks" || die "debugfs blocks (b ws)"
python3 "$PY" trace "$I/v1.qcow2" "$I/ws1.blocks" "$I/t1" || die "trace v1"
python3 "$PY" trace "$I/v2.qcow2" "$I/ws2.blocks" "$I/t2" || die "trace v2"
python3 "$PY" trace "$I/b.qcow2" "$I/wsb.blocks" "$I/tb" || die "trace b"
M1=$I/v1.qcow2.imgcache-manifest M2=$I/v2.qcow2.imgcache-manifest MB=$I/b.qcow2.imgcache-manifest
python3 "$PY" ideal $BS "$I/i1" "$M1" "$I/t1" || die "ideal v1"
python3 "$PY" ideal $BS "$I/i2" "$M2" "$I/t2" "$M1" "$I/t1" || die "ideal v2"
python3 "$PY" ideal $BS "$I/ib" "$MB" "$I/tb" "$M1" "$I/t1" "$M2" "$I/t2" || die "ideal b"
iv() { awk -v k="$2" '$1 == k { print $2 }' "$I/$1"; }
WS_DESC="$(wc -l <"$I/ws") files of v1 read whole ($(sed -n 's/.* ws [0-9]* files \([0-9]*\) bytes.*/\1/p' "$I/pick.out") bytes): $(grep -vc '^#' "$I/t1") host reads, $(iv i1 ws_blocks) 64K blocks ($(iv i1 nonzero_bytes) non-zero bytes) of v1; $(iv i2 ws_blocks) of v2; b: those files and the package's, $(iv ib ws_blocks) blocks"

# ------------------------------------------------------------ sharing

log "64K blocks shared between the images"
share() {
	local out
	out=$(python3 "$PY" share "$I/$1" "$I/$2") || return 1
	read -r _ n _ z _ same _ other _ nowhere <<<"$out"
	local nz=$((n - z))
	row "$3: same offset" "$same" blocks "non-zero blocks of $2" "$nz" -
	row "$3: other offset only" "$other" blocks "non-zero blocks of $2" "$nz" -
	row "$3: nowhere in $1" "$nowhere" blocks "non-zero blocks of $2" "$nz" -
}
share v1.qcow2 v2.qcow2 "blocks of v2 also in v1 (qcow2)" || die "share v1 v2"
share v1.qcow2 b.qcow2 "blocks of b also in v1 (qcow2)" || die "share v1 b"
share v1.qcow2 c.qcow2 "blocks of c (fresh mkfs) also in v1 (qcow2)" || die "share v1 c"
share v1.raw c.raw "blocks of c.raw also in v1.raw (guest)" || die "share raw"

# ------------------------------------------------------------ origin

for v in v1 b; do
	ln "$I/$v.qcow2" "$W/$v.qcow2" 2>/dev/null || cp -p "$I/$v.qcow2" "$W/$v.qcow2"
	cp "$I/$v.qcow2.imgcache-manifest" "$W/$v.qcow2.imgcache-manifest"
done
mv "$W/v1.qcow2" "$W/v.qcow2"
mv "$W/v1.qcow2.imgcache-manifest" "$W/v.qcow2.imgcache-manifest"
# The cost phase: the same bytes under two names, with and without a
# manifest beside them.
ln "$I/v1.qcow2" "$W/cm.qcow2" 2>/dev/null || cp -p "$I/v1.qcow2" "$W/cm.qcow2"
cp "$M1" "$W/cm.qcow2.imgcache-manifest"
ln "$I/v1.qcow2" "$W/cn.qcow2" 2>/dev/null || cp "$I/v1.qcow2" "$W/cn.qcow2"
PORT=
for _try in 1 2 3; do
	PORT=$(free_port)
	nginx_config "$PORT" "log_format t '\$request|\$status|\$body_bytes_sent|\$http_range';
    access_log $T/nginx/access.log t; sendfile on;"
	"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/nginx/stderr" 2>&1 &
	NGINX_PID=$!
	_register "$NGINX_PID" -
	wait_for 10 curl -sf -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/cn.qcow2" && break
	stop_pid "$NGINX_PID"
	PORT=
done
[ -n "$PORT" ] || die "nginx did not start: $(tail -n 1 "$T/nginx/error.log")"
NURL=http://127.0.0.1:$PORT
# served FROM_LINE NAME: body bytes and requests nginx answered for NAME.
served() {
	awk -F'|' -v from="$1" -v p="GET /$2 " 'NR >= from && index($1, p) == 1 {
		s += $3; n++ } END { printf "%d %d\n", s, n }' "$T/nginx/access.log"
}
loglines() { wc -l <"$T/nginx/access.log"; }
xattr() {
	getfattr --only-values -n "user.imgcache.$2" "$1" 2>/dev/null ||
		python3 -c 'import os, sys
try: print(os.getxattr(sys.argv[1], "user.imgcache." + sys.argv[2]).decode())
except OSError: pass' "$1" "$2" 2>/dev/null
}
cpu_of() {
	sed 's/^.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($12 + $13) / hz }'
}
# wait_hashed NAME N: until the index lists N blocks of template NAME's
# current generation with their hashes (the index writer commits about
# once a second; a delta fill finds only committed blocks).
hashed() {
	sqlite3 "$CACHE/index.db" "SELECT count(*) FROM blocks b JOIN templates t
		ON b.tid = t.id AND b.gen = t.generation WHERE t.name = '$1' AND
		b.sha IS NOT NULL" 2>/dev/null
}
wait_hashed() {
	command -v sqlite3 >/dev/null 2>&1 || {
		sleep 3 # no way to ask: give the writer a few commits
		return 0
	}
	wait_for 30 sh -c "[ \"\$(sqlite3 '$CACHE/index.db' \"SELECT count(*)
		FROM blocks b JOIN templates t ON b.tid = t.id AND
		b.gen = t.generation WHERE t.name = '$1' AND
		b.sha IS NOT NULL\" 2>/dev/null)\" -ge $2 ]" ||
		remark "the index listed $(hashed "$1") hashed blocks of $1 after 30 s, not $2."
}
# report_local NAME: local_bytes of NAME from imgcache-report --json.
report_local() {
	"$REPORT" --cache-dir "$CACHE" --json 2>/dev/null | python3 -c 'import json, sys
def walk(o):
    if isinstance(o, dict):
        if o.get("name") == sys.argv[1]:
            yield o
        for v in o.values():
            yield from walk(v)
    elif isinstance(o, list):
        for v in o:
            yield from walk(v)
for t in walk(json.load(sys.stdin)):
    print(t.get("counters", t).get("local_bytes", "")); break' "$1" 2>/dev/null
}
M=$T/mnt

# ------------------------------------------------------------ 1. update

# replay_ws NAME REF TRACE TAG: replay TRACE on the mount's NAME, comparing
# with REF; sets OB (origin bytes of NAME), OMB (its manifest's bytes),
# LB (local_bytes gained).
replay_ws() {
	local from l0 l1 rc=0
	from=$(($(loglines) + 1))
	l0=$(xattr "$M/$1" local_bytes)
	bounded "$REPLAY" -c "$2" "$M/$1" "$3" >"$T/replay.$4" 2>"$T/replay.$4.err" || rc=$?
	if [ "$rc" != 0 ]; then
		grep -q differ "$T/replay.$4.err" &&
			exact_failed "$4: $(head -n 1 "$T/replay.$4.err")"
		WHY="replay exited $rc: $(head -n 1 "$T/replay.$4.err")"
		return 1
	fi
	l1=$(xattr "$M/$1" local_bytes)
	read -r OB _ <<<"$(served "$from" "$1")"
	read -r OMB _ <<<"$(served "$from" "$1.imgcache-manifest")"
	LB=$((${l1:-0} - ${l0:-0}))
	isnum "${l1:-x}" || LB=x
}

# update_pass READAHEAD SUFFIX: phases 1 and 2 with an empty cache and v1
# at the origin; READAHEAD "" for the default, else its value; SUFFIX
# names the pass in the figures.
update_pass() {
	local sfx=$2
	CACHE=$T/cache.upd$1
	cp -p "$I/v1.qcow2" "$W/.v.qcow2.new" && mv "$W/.v.qcow2.new" "$W/v.qcow2"
	cp "$M1" "$W/v.qcow2.imgcache-manifest"
	log "phase 1$sfx: v1's working set cold, then v2 published and read"
	CONF=$T/imgcache.conf
	{
		printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
		printf 'origin_timeout = 30s\nrevalidate = 0\n'
		[ -z "$1" ] || printf 'readahead = %s\n' "$1"
		printf '\n[template v.qcow2]\norigin = %s/v.qcow2\n' "$NURL"
		printf '\n[template b.qcow2]\norigin = %s/b.qcow2\n' "$NURL"
	} >"$CONF"
	start_imgcache "$CONF" "$M"

	if replay_ws v.qcow2 "$I/v1.qcow2" "$I/t1" v1; then
		row "v1 working set, cold: origin bytes$sfx" "$(mib $((OB + OMB)))" MiB \
			"its non-zero blocks + manifest" "$(mib $(($(iv i1 nonzero_bytes) + $(stat -c %s "$M1"))))" -
		remark "v1 cold$sfx: $(mib "$OB") MiB of blocks + $(mib "$OMB") MiB manifest from the origin; $(mib "$((${LB/x/0}))") MiB copied locally (blocks repeated within v1's working set)."
	else
		na "v1 working set, cold: origin bytes$sfx" MiB - - - "$WHY"
	fi
	wait_hashed v.qcow2 "$(iv i1 nonzero_blocks)"
	gen1=$(xattr "$M/v.qcow2" generation)

	# Publish v2 as an operator does: the new manifest first, then the
	# template renamed into place; copied with its mtime (cp -p), to which
	# its manifest is bound (a plain cp would make it unbound: then it
	# only checks, and no block is copied locally).
	cp -p "$I/v2.qcow2" "$W/.v.qcow2.new"
	cp "$M2" "$W/.v.m.new" && mv "$W/.v.m.new" "$W/v.qcow2.imgcache-manifest"
	mv "$W/.v.qcow2.new" "$W/v.qcow2"
	CH2=$(iv i2 changed_bytes)
	if replay_ws v.qcow2 "$I/v2.qcow2" "$I/t2" v2; then
		gen2=$(xattr "$M/v.qcow2" generation)
		[ "$gen2" != "$gen1" ] ||
			remark "v.qcow2's generation did not change ($gen1): v2 was not seen as new."
		row "v2 working set after v1's: origin bytes$sfx" "$(mib $((OB + OMB)))" MiB \
			"changed blocks + manifest" "$(mib $((CH2 + MSIZE2)))" "<=1.05"
		if [ "$LB" = x ]; then
			na "v2 working set: bytes from local copies$sfx" MiB - - - "no user.imgcache.local_bytes xattr"
		else
			row "v2 working set: bytes from local copies$sfx" "$(mib "$LB")" MiB \
				"its unchanged non-zero blocks" "$(mib $(($(iv i2 nonzero_bytes) - CH2)))" -
		fi
		row "v2 working set: origin bytes without delta fill$sfx" "$(mib "$(iv i2 nonzero_bytes)")" MiB \
			"changed blocks + manifest" "$(mib $((CH2 + MSIZE2)))" -
		remark "v2$sfx: $(mib "$OB") MiB of blocks + $(mib "$OMB") MiB manifest from the origin; changed blocks of its working set: $(mib "$CH2") MiB (of them $(mib "$(iv i2 nowhere_bytes)") MiB found nowhere in v1, $(mib "$(iv i2 dup_in_changed_bytes)") MiB repeated within them); generation $gen1 -> $gen2."
	else
		na "v2 working set after v1's: origin bytes$sfx" MiB - - "<=1.05" "$WHY"
		na "v2 working set: bytes from local copies$sfx" MiB - - - "$WHY"
	fi
	wait_hashed v.qcow2 "$(iv i2 nonzero_blocks)"

	# ------------------------------------------------------------ 2. another template

	log "phase 2$sfx: b (v1 + a package) read after v1 and v2"
	CHB=$(iv ib changed_bytes)
	if replay_ws b.qcow2 "$I/b.qcow2" "$I/tb" b; then
		row "b working set after v1, v2: origin bytes$sfx" "$(mib $((OB + OMB)))" MiB \
			"blocks not cached + manifest" "$(mib $((CHB + MSIZEB)))" "<=1.05"
		if [ "$LB" = x ]; then
			na "b working set: bytes from local copies$sfx" MiB - - - "no user.imgcache.local_bytes xattr"
		else
			row "b working set: bytes from local copies$sfx" "$(mib "$LB")" MiB \
				"its non-zero blocks already cached" "$(mib $(($(iv ib nonzero_bytes) - CHB)))" -
		fi
		remark "b$sfx: $(mib "$OB") MiB of blocks + $(mib "$OMB") MiB manifest from the origin; $(mib "$(iv ib nonzero_bytes)") MiB non-zero in its working set, $(mib "$CHB") MiB of it not in v1's or v2's working sets."
	else
		na "b working set after v1, v2: origin bytes$sfx" MiB - - "<=1.05" "$WHY"
		na "b working set: bytes from local copies$sfx" MiB - - - "$WHY"
	fi
	stop_imgcache "$M"
	remark "imgcache-report --json local_bytes$sfx (after the daemon stopped: it saves its counters then), whole pass: v.qcow2 $(report_local v.qcow2), b.qcow2 $(report_local b.qcow2)."
	rm -rf "$CACHE"
}

update_pass "" ""
update_pass 0 " (readahead = 0)"
CACHE=$T/cache

# ------------------------------------------------------------ 3. cost

fresh_origin() {
	if [ -n "$CAN_DROP" ]; then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
	cat "$I/v1.qcow2" >/dev/null
}
VSZ=$(stat -c %s "$I/v1.qcow2")
log "phase 3: cold sequential read of v1, with and without its manifest, $ROUNDS rounds"
: >"$T/cost"
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) = 1 ]; then order="m n"; else order="n m"; fi
	for k in $order; do
		CACHE=$T/cache.cost.$r.$k
		{
			printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
			printf 'origin_timeout = 30s\n'
			printf '\n[template c.qcow2]\norigin = %s/c%s.qcow2\n' "$NURL" "$k"
			[ "$k" = m ] || printf 'manifest = none\n'
		} >"$T/cost.conf"
		fresh_origin
		start_imgcache "$T/cost.conf" "$M"
		c0=$(cpu_of "$IMGCACHE_PID")
		s0=$(sys_cpu)
		t0=$EPOCHREALTIME
		if ! bounded dd if="$M/c.qcow2" of=/dev/null bs=1M status=none; then
			remark "cost round $r ($k): the read failed"
			BAD=1
		fi
		t1=$EPOCHREALTIME
		split=$(cpu_split "$s0" "$(sys_cpu)")
		c1=$(cpu_of "$IMGCACHE_PID")
		vb=$(xattr "$M/c.qcow2" verified_blocks)
		if ! bounded cmp "$M/c.qcow2" "$I/v1.qcow2" >"$T/cmp.out" 2>&1; then
			exact_failed "cost round $r ($k): $(head -n 1 "$T/cmp.out")"
		fi
		stop_imgcache "$M"
		rm -rf "$CACHE"
		awk -v k="$k" -v r="$r" -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" \
			-v sz="$VSZ" -v vb="${vb:-0}" -v cs="$split" 'BEGIN {
			split(cs, m, " ")
			printf "%s %d %.1f %.2f %s %.2f %.2f %.2f\n", k, r,
				sz / 1048576 / (b - a), (c1 - c0) / (sz / 1073741824),
				vb, m[1], m[2], m[3] }' >>"$T/cost"
	done
done
CACHE=$T/cache
# med KIND FIELD: median of the rounds' FIELD (3 = MiB/s, 4 = CPU s/GiB).
med() {
	awk -v k="$1" -v f="$2" '$1 == k { print $f }' "$T/cost" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
spread() { awk -v k="$1" -v f="$2" '$1 == k { printf "%s ", $f }' "$T/cost"; }
rm_=$(med m 3) rn_=$(med n 3)
if isnum "${rm_:-x}" && isnum "${rn_:-x}"; then
	row "cold seq read, manifest (median of $ROUNDS)" "$rm_" MiB/s "manifest = none" "$rn_" ">=0.9"
	row "daemon CPU per GiB, manifest" "$(med m 4)" s/GiB "manifest = none" "$(med n 4)" -
	row "cold seq read, manifest = none (median of $ROUNDS)" "$rn_" MiB/s - - -
	remark "cost rounds, MiB/s: with manifest $(spread m 3)/ without $(spread n 3)(alternated: m n, n m, ...)."
	remark "cost rounds, daemon CPU s/GiB: with manifest $(spread m 4)/ without $(spread n 4); blocks verified per read: with $(spread m 5)/ without $(spread n 5)."
	remark "cost rounds, the machine's $(nproc) CPUs (/proc/stat, CPU-s busy/iowait/idle): with manifest $(awk '$1 == "m" { printf "%s/%s/%s ", $6, $7, $8 }' "$T/cost")/ without $(awk '$1 == "n" { printf "%s/%s/%s ", $6, $7, $8 }' "$T/cost")."
	# Where the machine is busy throughout, the read with a manifest takes
	# as much longer as the hashing adds CPU work: the ratio can be no
	# better than busy / (busy + the SHA-256 CPU-s of the read).  The rate
	# is libcrypto's own (openssl speed, the EVP call the daemon makes, on
	# 64 KiB blocks, one thread), beside the reads.
	bn=$(med n 6) in_=$(med n 7) idn=$(med n 8)
	shar=""
	if command -v openssl >/dev/null 2>&1; then
		shar=$(openssl speed -evp sha256 -bytes 65536 -seconds 3 2>/dev/null |
			awk '$1 == "sha256" { printf "%.0f", $2 / 1024 / 1.024 / 1.024 }')
		shar=${shar%k}
	fi
	if isnum "${bn:-x}"; then
		row "cost: machine busy during the read without manifest" "$bn" CPU-s "busy+iowait+idle" "$(awk -v a="$bn" -v b="$in_" -v c="$idn" 'BEGIN { print a + b + c }')" -
	fi
	if isnum "${shar:-x}" && isnum "${bn:-x}"; then
		hs=$(awk -v r="$shar" -v sz="$VSZ" 'BEGIN { printf "%.2f", sz / 1048576 / r }')
		row "SHA-256 (libcrypto, 64 KiB blocks, one CPU)" "$shar" MiB/s - - -
		row "cost: the CPU bound on the ratio, busy / (busy + SHA-256 CPU-s)" "$bn" CPU-s "busy + $hs CPU-s of hashing" "$(awk -v a="$bn" -v h="$hs" 'BEGIN { print a + h }')" -
		# Whatever the overlap: the read with a manifest does the plain
		# read's work and the hashing, on this machine's CPUs, so it
		# cannot take less than (busy + hashing) / CPUs; against the
		# plain read's time that caps the ratio at its CPU-s available
		# (busy + iowait + idle) / (busy + hashing).
		av=$(awk -v a="$bn" -v b="$in_" -v c="$idn" 'BEGIN { print a + b + c }')
		need=$(awk -v a="$bn" -v h="$hs" 'BEGIN { print a + h }')
		row "cost: the ceiling on the ratio, CPU-s available / (busy + SHA-256 CPU-s)" "$av" CPU-s "busy + $hs CPU-s of hashing" "$need" -
		if awk -v a="$av" -v n="$need" 'BEGIN { exit !(n > 0 && a / n < 0.9) }'; then
			remark "the cost target (>= 0.9) is above this run's ceiling: $av CPU-s available during the read without manifest, $need needed with one (its busy + the hashing)."
		fi
	else
		na "SHA-256 (libcrypto, 64 KiB blocks, one CPU)" MiB/s - - - "openssl is not installed"
	fi
else
	na "cold seq read, manifest (median of $ROUNDS)" MiB/s "manifest = none" - ">=0.9" "the cost reads gave no figure"
fi

# ------------------------------------------------------------ 4. memory

if [ "$SPARSE" -gt 0 ]; then
	log "phase 4: a $((SPARSE >> 30)) GiB sparse template with a manifest"
	truncate -s "$SPARSE" "$W/sp.img"
	# NSCATTER blocks of data at scattered offsets; the trace reads them
	# and as many zero blocks.
	python3 - "$W/sp.img" "$NSCATTER" "$T/tsp" <<'PY' || die "sparse template"
import random, sys
fn, n, tr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(17)
with open(fn, "r+b") as f:
    f.seek(0, 2)
    nb = f.tell() // 65536
    blocks = r.sample(range(nb), 2 * n)
    for b in blocks[:n]:
        f.seek(b * 65536)
        f.write(r.randbytes(65536))
with open(tr, "w") as o:
    o.write("# imgcache-trace v1\n# sparse template\n")
    for k, b in enumerate(sorted(blocks)):
        o.write("%d %d 65536\n" % (k * 100, b * 65536))
PY
	t0=$EPOCHREALTIME
	"$MANIFEST" -o "$W/sp.img.imgcache-manifest" "$W/sp.img" >"$T/sp.manifest.out" 2>&1 ||
		die "imgcache-manifest of the sparse template: $(tail -n 1 "$T/sp.manifest.out")"
	t1=$EPOCHREALTIME
	SPM=$(stat -c %s "$W/sp.img.imgcache-manifest")
	remark "imgcache-manifest of the $((SPARSE >> 30)) GiB sparse template: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s ($(sed -n 's/.*threads, \(.*\): wrote.*/\1/p' "$T/sp.manifest.out")), $SPM bytes."
	declare -A HWM RSS RF RSS0
	for k in m n; do
		CACHE=$T/cache.sp.$k
		{
			printf '[global]\ncache_dir = %s\nblock_size = 64K\n' "$CACHE"
			printf 'origin_timeout = 30s\n'
			printf '\n[template sp.img]\norigin = %s/sp.img\n' "$NURL"
			[ "$k" = m ] || printf 'manifest = none\n'
		} >"$T/sp.conf"
		start_imgcache "$T/sp.conf" "$M"
		rss0=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$IMGCACHE_PID/status")
		rc=0
		bounded "$REPLAY" -c "$W/sp.img" "$M/sp.img" "$T/tsp" >"$T/replay.sp.$k" 2>&1 || rc=$?
		if [ "$rc" != 0 ]; then
			grep -q differ "$T/replay.sp.$k" && exact_failed "sparse ($k): $(grep -m1 differ "$T/replay.sp.$k")"
			remark "sparse replay ($k) exited $rc: $(head -n 1 "$T/replay.sp.$k")"
			BAD=1
		fi
		st=/proc/$IMGCACHE_PID/status
		HWM[$k]=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "$st")
		RSS[$k]=$(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "$st")
		RF[$k]=$(awk '/^RssFile:/ { printf "%.1f", $2 / 1024 }' "$st")
		RSS0[$k]=$rss0
		dm=$(find "$CACHE/data" -name '*.imgcache-manifest' -printf '%s\n' 2>/dev/null | head -n 1)
		[ "$k" = n ] || SPM_CACHED=${dm:-none}
		stop_imgcache "$M"
		rm -rf "$CACHE"
	done
	CACHE=$T/cache
	if isnum "${HWM[m]:-x}" && isnum "${HWM[n]:-x}"; then
		row "$((SPARSE >> 30)) GiB template, manifest: daemon VmHWM" "${HWM[m]}" MiB "manifest = none" "${HWM[n]}" -
		row "$((SPARSE >> 30)) GiB template, manifest: daemon VmRSS after the reads" "${RSS[m]}" MiB "manifest = none" "${RSS[n]}" -
		row "$((SPARSE >> 30)) GiB template: manifest on disk" "$(mib "$SPM")" MiB "64 + 32 B x blocks + 32" "$(mib $((64 + 32 * ((SPARSE + BS - 1) / BS) + 32)))" -
		remark "sparse template: $NSCATTER data blocks and $NSCATTER zero blocks read, scattered; VmRSS at start ${RSS0[m]} / ${RSS0[n]} MiB (with / without manifest), RssFile after the reads ${RF[m]} / ${RF[n]} MiB; the daemon's copy of the manifest in cache_dir/data: ${SPM_CACHED:-none} bytes."
	else
		na "$((SPARSE >> 30)) GiB template, manifest: daemon VmHWM" MiB - - - "no figure from the daemon"
	fi
fi

# ------------------------------------------------------------ end

stop_pid "$NGINX_PID"
remark "origin: nginx on 127.0.0.1 (sendfile), files in the page cache; the working sets are replayed O_DIRECT (test/bench/replay), the cost reads are dd bs=1M buffered; changed blocks = blocks of the working set whose SHA-256 is not among those of the blocks already read (update.py ideal)."
print_table
if [ -n "${BENCH_UPDATE_MD:-}" ]; then
	{
		echo "| figure | value | unit | reference | ratio | target |"
		echo "|---|---:|---|---|---:|---|"
		awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$ROWS"
	} >"$BENCH_UPDATE_MD"
fi
if [ -n "$SMOKE" ] && { [ "$BAD" != 0 ] || [ -n "${NA_SEEN:-}" ]; }; then
	exit 1
fi
exit 0
