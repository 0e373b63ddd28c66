#!/bin/sh
# t-layers: the code is a one-way stack.  From the built objects' own
# symbols (nm), every call between two files of fs/ must go from a file to
# one below it in LAYERS (so the call graph has no cycle, and no folder
# calls into a folder above it).  A new file must be placed in LAYERS.
#
# By hand, from a built tree: top_builddir=. sh test/t-layers.sh, with
# KEEP_TMP=1 to keep $T/calls ("caller callee symbol" per line).
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"

command -v nm >/dev/null || skip "nm (binutils) not installed"

# Bottom first; one line per folder (README, "Layout").
LAYERS="
base:   log util checksum fillbuf manifest offload
config: proxyspec conf pinspec qcow2
origin: url health http-check sched proxy origin-file origin-http origin
index:  index index-report index-scrub writer
engine: blockmap store stage qmap pin cache evict verify read readahead prewarm engine
daemon: ctlproto ctl bdi fuse-ops main
"

objs=$(find "$top_builddir/fs" -name '*.o' ! -path '*/.libs/*' | sort)
[ -n "$objs" ] || skip "no objects under $top_builddir/fs (not built here)"

rank=$T/rank
echo "$LAYERS" | awk 'NF { sub(":", "", $1); for (i = 2; i <= NF; i++)
	print $i, ++n, $1 }' >"$rank"

# Every object is a known module, in the folder LAYERS says.
for o in $objs; do
	f=$(basename "$o" .o)
	dir=$(basename "$(dirname "$o")")
	want=$(awk -v f="$f" '$1 == f { print $3 }' "$rank")
	if [ -z "$want" ]; then
		not_ok "fs/$dir/$f.o is in no layer: add it to LAYERS in $0"
	elif [ "$want" != "$dir" ]; then
		not_ok "fs/$dir/$f.o: LAYERS puts $f in fs/$want/"
	fi
done

for o in $objs; do
	f=$(basename "$o" .o)
	nm -g --defined-only "$o" | awk -v f="$f" 'NF == 3 { print $3, f }'
done | sort >"$T/defs"
for o in $objs; do
	f=$(basename "$o" .o)
	nm -u "$o" | awk -v f="$f" '{ print $2, f }'
done | sort >"$T/uses"
# caller callee symbol
join "$T/uses" "$T/defs" | awk '$2 != $3 { print $2, $3, $1 }' |
	sort -u >"$T/calls"
ncalls=$(wc -l <"$T/calls")
assert_le "calls between files found (nm works)" 1 "$ncalls"

up=$(awk 'NR == FNR { r[$1] = $2; next }
          r[$1] <= r[$2] { print $1 " -> " $2 " (" $3 ")" }' "$rank" "$T/calls")
if [ -n "$up" ]; then
	not_ok "calls that go up a layer or sideways:
$up"
else
	ok "all $ncalls calls between files of fs/ go down the stack"
fi
# Independent of LAYERS: the file graph has no cycle.
if awk '{ print $1, $2 }' "$T/calls" | tsort >/dev/null 2>"$T/tsort"; then
	ok "the call graph between files has no cycle"
else
	not_ok "cycle: $(cat "$T/tsort")"
fi

# The config pointer is replaced by a reload (a release store): outside
# the config loads of engine.c (cfg_lock) it is read with cache_conf()
# (an acquire load), never as a plain c->conf.
src=${top_srcdir:-$(dirname "$0")/..}/fs/engine
plain=$(grep -nE -- '->conf([^_a-zA-Z]|$)' "$src"/*.c |
	grep -vE '^[^:]*/engine\.c:|__atomic_load_n\(&c->conf' || true)
if [ -n "$plain" ]; then
	not_ok "plain loads of the config pointer (use cache_conf()):
$plain"
else
	ok "the engine reads the config pointer through cache_conf()"
fi
