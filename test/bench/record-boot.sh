#!/bin/bash
# record-boot.sh — record a boot trace for `make bench-storm`.
#
# usage: record-boot.sh [-s SECONDS] [-m MEM] [-a APPEND] [-M MARKER]
#                       [-d CACHE_DIR] [-o OUTDIR] [-i ORIGIN] TEMPLATE KERNEL INITRD
#
# TEMPLATE is a qcow2 template on a running imgcache mount (e.g.
# /var/lib/imgcache/mnt/debian12.qcow2); KERNEL and INITRD the guest's.
# The script:
#  1. installs qemu-system-x86 (and qemu-utils) with apt-get when missing;
#  2. creates a qcow2 overlay whose backing file is TEMPLATE (in a
#     temporary directory), so the guest writes nothing to the template;
#  3. starts `imgcache-pin --record SECONDS --trace` for the template;
#  4. boots the overlay with qemu-system-x86_64, -drive cache=none (QEMU
#     opens the backing file O_DIRECT too, as a VM host does), KVM when
#     /dev/kvm is there, else TCG; the serial console goes to OUTDIR/boot.log;
#     QEMU is stopped when the console prints MARKER (default "login:": the
#     end of boot) or after SECONDS;
#  5. writes OUTDIR/boot.trace (xz-compressed to boot.trace.xz when larger
#     than 1 MiB), and the skeleton of the image: OUTDIR/boot.skel.qcow2.xz
#     (the qcow2 file with its metadata kept and every data cluster zeroed,
#     from `qemu-img map`) and OUTDIR/boot.datamap (HOST_OFFSET LENGTH of
#     the data cluster runs, which storm.sh fills with pseudo-random bytes).
#     The skeleton is read from ORIGIN (-i) when given, else from TEMPLATE
#     (through the mount: the whole file is fetched once).
# Copy the three files to test/bench/ and bench-storm uses them by default.
#
# Defaults: SECONDS 300, MEM 1024 (MiB), APPEND "root=/dev/vda1 ro
# console=ttyS0 panic=-1", CACHE_DIR the daemon's (imgcache-pin's default),
# OUTDIR the current directory.
set -u -o pipefail
export LC_ALL=C

SECS=300 MEM=1024 APPEND="root=/dev/vda1 ro console=ttyS0 panic=-1"
MARKER="login:" CACHE_DIR="" OUT=. ORIGIN=""
usage() {
	sed -n '3,5p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}
while getopts "s:m:a:M:d:o:i:h" c; do
	case $c in
	s) SECS=$OPTARG ;;
	m) MEM=$OPTARG ;;
	a) APPEND=$OPTARG ;;
	M) MARKER=$OPTARG ;;
	d) CACHE_DIR=$OPTARG ;;
	o) OUT=$OPTARG ;;
	i) ORIGIN=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# = 3 ] || usage
TEMPLATE=$1 KERNEL=$2 INITRD=$3
case $SECS in '' | *[!0-9]*) usage ;; esac
for f in "$TEMPLATE" "$KERNEL" "$INITRD"; do
	[ -r "$f" ] || {
		echo "record-boot: cannot read $f" >&2
		exit 1
	}
done
NAME=$(basename "$TEMPLATE")
HERE=$(cd "$(dirname "$0")/../.." && pwd)
PIN=${IMGCACHE_PIN:-}
if [ -z "$PIN" ]; then
	if [ -x "$HERE/tools/imgcache-pin" ]; then
		PIN=$HERE/tools/imgcache-pin
	else
		PIN=$(command -v imgcache-pin) || {
			echo "record-boot: imgcache-pin not found (build it, or set IMGCACHE_PIN)" >&2
			exit 1
		}
	fi
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "record-boot: $*" >&2; }

if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || ! command -v qemu-img >/dev/null 2>&1; then
	log "installing qemu-system-x86 and qemu-utils (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-system-x86 qemu-utils >&2 || {
		log "apt-get install failed"
		exit 1
	}
fi
fmt=$(qemu-img info --output=json "$TEMPLATE" | python3 -c 'import json, sys; print(json.load(sys.stdin)["format"])')
[ "$fmt" = qcow2 ] || {
	echo "record-boot: $TEMPLATE is $fmt, not qcow2" >&2
	exit 1
}

W=$(mktemp -d "${TMPDIR:-/var/tmp}/record-boot.XXXXXX") || exit 1
QEMU_PID="" REC_PID=""
cleanup() {
	[ -z "$QEMU_PID" ] || kill "$QEMU_PID" 2>/dev/null
	[ -z "$REC_PID" ] || kill "$REC_PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

qemu-img create -q -f qcow2 -b "$(cd "$(dirname "$TEMPLATE")" && pwd)/$NAME" \
	-F qcow2 "$W/overlay.qcow2" || exit 1

log "recording the reads of $NAME for up to $SECS s"
"$PIN" ${CACHE_DIR:+--cache-dir "$CACHE_DIR"} --record "$SECS" --trace \
	--output "$OUT/boot.trace" "$NAME" 2>"$W/pin.err" &
REC_PID=$!
# The daemon starts recording when the request arrives; it answers only at
# the end, so there is nothing to wait on: give the request a moment.
sleep 1
kill -0 "$REC_PID" 2>/dev/null || {
	log "imgcache-pin --record failed: $(cat "$W/pin.err")"
	exit 1
}

ACCEL=tcg
[ -w /dev/kvm ] && ACCEL=kvm
log "booting with $ACCEL (console in $OUT/boot.log)"
t0=$(date +%s)
qemu-system-x86_64 -accel "$ACCEL" -m "$MEM" -smp 1 -nographic -no-reboot \
	-kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND" \
	-drive "file=$W/overlay.qcow2,if=virtio,format=qcow2,cache=none" \
	-netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 \
	-serial "file:$OUT/boot.log" -monitor none -display none </dev/null \
	>"$W/qemu.out" 2>&1 &
QEMU_PID=$!
booted=
while kill -0 "$QEMU_PID" 2>/dev/null; do
	if grep -q -- "$MARKER" "$OUT/boot.log" 2>/dev/null; then
		booted=$(($(date +%s) - t0))
		break
	fi
	[ $(($(date +%s) - t0)) -lt "$SECS" ] || break
	sleep 0.5
done
kill "$QEMU_PID" 2>/dev/null
wait "$QEMU_PID" 2>/dev/null
QEMU_PID=
if [ -n "$booted" ]; then
	log "\"$MARKER\" on the console after $booted s"
else
	log "warning: no \"$MARKER\" on the console (see $OUT/boot.log, $(tail -n 1 "$W/qemu.out"))"
fi
log "waiting for the recording to end (it runs $SECS s from its start)"
wait "$REC_PID" || {
	REC_PID=
	log "imgcache-pin --record failed: $(cat "$W/pin.err")"
	exit 1
}
REC_PID=
n=$(grep -vc '^#' "$OUT/boot.trace")
log "trace: $n reads, $(awk '!/^#/ { s += $3 } END { printf "%.1f MB", s / 1e6 }' "$OUT/boot.trace")"
if [ "$(stat -c %s "$OUT/boot.trace")" -gt 1048576 ]; then
	xz -f -9 "$OUT/boot.trace" && log "compressed to boot.trace.xz"
fi

# The skeleton: the image's own bytes but for its data clusters (zeroed, a
# sparse file), so the bench replays against the real metadata layout.
SRC=${ORIGIN:-$TEMPLATE}
log "writing the skeleton of $SRC"
qemu-img map --output=json -f qcow2 "$SRC" >"$W/map.json" || exit 1
python3 - "$W/map.json" "$OUT/boot.datamap" <<'PY' || exit 1
import json, sys
runs = []
for e in json.load(open(sys.argv[1])):
    if e.get("data") and "offset" in e:
        runs.append((e["offset"], e["length"]))
runs.sort()
merged = []
for off, ln in runs:
    if merged and merged[-1][0] + merged[-1][1] == off:
        merged[-1][1] += ln
    else:
        merged.append([off, ln])
with open(sys.argv[2], "w") as f:
    f.write("# HOST_OFFSET LENGTH of the data cluster runs (qemu-img map)\n")
    for off, ln in merged:
        f.write("%d %d\n" % (off, ln))
PY
cp --sparse=always "$SRC" "$W/skel.qcow2" || exit 1
while read -r off len; do
	case $off in '#'* | '') continue ;; esac
	fallocate -p -o "$off" -l "$len" "$W/skel.qcow2" ||
		dd if=/dev/zero of="$W/skel.qcow2" bs=64K seek="$off" count="$len" \
			oflag=seek_bytes iflag=count_bytes conv=notrunc status=none || exit 1
done <"$OUT/boot.datamap"
xz -T2 -9 -c "$W/skel.qcow2" >"$OUT/boot.skel.qcow2.xz" || exit 1
log "wrote $OUT/boot.skel.qcow2.xz ($(stat -c %s "$OUT/boot.skel.qcow2.xz") bytes) and boot.datamap ($(grep -vc '^#' "$OUT/boot.datamap") runs)"
