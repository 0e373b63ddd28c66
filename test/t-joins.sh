#!/bin/sh
# t-joins: many readers of one cold block (VMs booting from one template)
# cost the origin one fetch: the reader that claims it fetches it, the
# others wait for that fetch and are then served from the cache
# (user.imgcache.joined_reads counts them), every one with the origin's
# bytes.  When the origin hangs instead, the waiters are bounded as
# every reader is: EIO within origin_timeout + 1 s.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse
require_local_http
command -v getfattr >/dev/null 2>&1 || skip "getfattr not installed"

READERS=8
BLK=5 # the block every reader reads
make_file "$T/src/j.img" 2
dd if="$T/src/j.img" of="$T/want" bs="$BS" skip="$BLK" count=1 status=none
# lag/: each ranged GET is answered after 2 s; the readers after the
# first start once its GET has reached the server (--trace): they find
# its fetch in flight.
# sw/ serves h.img; while $T/fault says "hang!", its ranged GETs hang.
start_faultsrv fs "$T/src/j.img" --delay 2 --fault-file "$T/fault" \
	--trace "$T/trace"
{
	global_section # origin_timeout = 3s
	printf 'readahead = 0\n'
	printf '\n[template j.img]\norigin = %s/lag/j.img\n' "$URL"
	printf '\n[template h.img]\norigin = %s/sw/j.img\n' "$URL"
} >"$T/conf"
sed -i 's/^origin_timeout = .*/origin_timeout = 6s/' "$T/conf"
MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
xattr() { getfattr --only-values -n "user.imgcache.$2" "$1" 2>/dev/null; }

# read_one I: O_DIRECT read of block BLK into $T/out.I; its status and
# milliseconds in $T/rc.I.
read_one() {
	_t0=$(now_ms)
	_rc=0
	bounded dd if="$MNT/$2" of="$T/out.$1" bs="$BS" skip="$BLK" count=1 \
		iflag=direct status=none 2>"$T/err.$1" || _rc=$?
	echo "$_rc $(($(now_ms) - _t0))" >"$T/rc.$1"
}

[ "$(xattr "$MNT/j.img" joined_reads)" = 0 ] ||
	not_ok "joined_reads before any read: $(xattr "$MNT/j.img" joined_reads)"
read_one 1 j.img &
pids=$!
wait_for 10 grep -q "start .* GET /lag/j.img bytes=$((BLK * BS))-" "$T/trace" ||
	not_ok "the first reader's GET did not reach the origin"
for i in $(seq 2 "$READERS"); do
	read_one "$i" j.img &
	pids="$pids $!"
done
# shellcheck disable=SC2086 # the pids
wait $pids
good=0
for i in $(seq "$READERS"); do
	read -r rc _ms <"$T/rc.$i"
	if [ "$rc" = 0 ] && cmp -s "$T/out.$i" "$T/want"; then
		good=$((good + 1))
	else
		not_ok "reader $i: status $rc, $(head -n 1 "$T/err.$i")"
	fi
done
assert_eq "$READERS readers of one cold block get the origin's bytes" \
	"$READERS" "$good"
gets=$(awk -v r="bytes=$((BLK * BS))-" '$1 == "GET" && index($3, r) == 1' \
	"$T/fs.log" | wc -l)
assert_eq "the block was fetched once (ranged GETs of it)" 1 "$gets"
assert_eq "the other readers joined that fetch (joined_reads)" \
	$((READERS - 1)) "$(xattr "$MNT/j.img" joined_reads)"

# --- a read of a block being filled and of a missing one beside it
# fetches the missing one at once, beside the fill it then waits for (not
# after it): from the origin's side, the second GET starts before the
# first one ends.
BLK=10
read_one a j.img &
pa=$!
wait_for 10 grep -q "start .* GET /lag/j.img bytes=$((BLK * BS))-" "$T/trace" ||
	not_ok "the first reader's GET did not reach the origin"
na=$(awk -v r="bytes=$((BLK * BS))-" '$2 == "start" && index($7, r) == 1 {
	print $3 }' "$T/trace" | tail -n 1)
_rc=0
bounded dd if="$MNT/j.img" of="$T/out.b" bs=$((2 * BS)) skip=5 count=1 \
	iflag=direct status=none 2>"$T/err.b" || _rc=$?
wait "$pa"
dd if="$T/src/j.img" of="$T/want.b" bs=$((2 * BS)) skip=5 count=1 status=none
if [ "$_rc" = 0 ] && cmp -s "$T/out.b" "$T/want.b"; then
	ok "a read of blocks 10-11 (10 being filled) gets the origin's bytes"
else
	not_ok "the read of blocks 10-11: status $_rc, $(head -n 1 "$T/err.b")"
fi
order=$(awk -v n="$na" -v r="bytes=$((11 * BS))-" '
	$2 == "end" && $3 == n && !e { e = NR }
	$2 == "start" && index($7, r) == 1 && !s { s = NR }
	END { print (s && (!e || s < e)) ? "beside" : "after" }' "$T/trace")
assert_eq "block 11 was fetched beside block 10's fill, not after it" \
	beside "$order"

# --- a hung origin: every waiter bounded by its own origin_timeout
# (2 s here) + 1 s
sed -i 's/^origin_timeout = .*/origin_timeout = 2s/' "$T/conf"
reload_imgcache
echo 'hang!' >"$T/fault"
BLK=9
pids=
for i in $(seq "$READERS"); do
	read_one "h$i" h.img &
	pids="$pids $!"
done
# shellcheck disable=SC2086
wait $pids
eio=0
slow=0
for i in $(seq "$READERS"); do
	read -r rc ms <"$T/rc.h$i"
	grep -q "Input/output error" "$T/err.h$i" && eio=$((eio + 1))
	[ "$ms" -le 3000 ] || slow=$((slow + 1))
	note "hung reader $i: status $rc after $ms ms"
done
assert_eq "$READERS readers of a hung origin's block get EIO" "$READERS" "$eio"
assert_eq "... each within origin_timeout (2 s) + 1 s" 0 "$slow"
stop_imgcache "$MNT"
stop_faultsrv fs
