#!/bin/sh
# t-badconf: configuration errors make imgcache exit 2 before mounting, with
# "FILE:LINE: message" on stderr naming the offending line.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

make_file "$T/src/a.img" 1
mkdir -p "$T/src/dir"
MNT=$T/mnt
mkdir -p "$MNT"
_register - "$MNT" # unmounted by the cleanup trap should a bad config mount

# base: a valid config (lines 1-8); cases append to it.
base() {
	global_section # 4 lines
	printf '\n[template a.img]\norigin = %s\n\n' "$T/src/a.img"
}

# Control: the base config mounts.
base >"$T/good.conf"
start_imgcache "$T/good.conf" "$MNT"
ok "control: the valid base config mounts"
stop_imgcache "$MNT"

n=0
# bad DESC [nofork]: the config on stdin must be refused; the bad line is
# the one containing "@@" (the marker is removed before use).  With nofork
# the daemon runs without -f (errors must come before it daemonizes).
bad() {
	n=$((n + 1))
	_b_conf=$T/bad$n.conf
	base >"$T/bad.tmp"
	cat >>"$T/bad.tmp"
	_b_line=$(grep -n '@@' "$T/bad.tmp" | cut -d: -f1)
	sed 's/ *@@//' "$T/bad.tmp" >"$_b_conf"
	_b_rc=0
	if [ "${2:-}" = nofork ]; then
		timeout -k 5 20 "$IMGCACHE" "$_b_conf" "$MNT" >"$T/bad.out" \
			2>"$T/bad.err" || _b_rc=$?
	else
		timeout -k 5 20 "$IMGCACHE" -f "$_b_conf" "$MNT" >"$T/bad.out" \
			2>"$T/bad.err" || _b_rc=$?
	fi
	assert_eq "$1: exit status 2" 2 "$_b_rc"
	if grep -qF "$_b_conf:$_b_line:" "$T/bad.err"; then
		ok "$1: stderr names $(basename "$_b_conf"):$_b_line ($(grep -F \
			"$_b_conf:$_b_line:" "$T/bad.err" | head -n 1 |
			sed "s|^.*$_b_conf:$_b_line: *||"))"
	else
		not_ok "$1: stderr lacks '$_b_conf:$_b_line:': $(head -n 2 "$T/bad.err" |
			tr '\n' ' ')"
	fi
	if is_mounted "$MNT"; then
		not_ok "$1: something got mounted"
		fusermount3 -u "$MNT" || fusermount3 -uz "$MNT"
	else
		ok "$1: nothing mounted"
	fi
}

bad "unknown key" <<'EOF'
colour = blue @@
EOF

bad "unknown key in a template" <<EOF
[template b.img]
origin = $T/src/a.img
colour = blue @@
EOF

bad "bad size (64Q)" <<EOF
[template b.img]
origin = $T/src/a.img
block_size = 64Q @@
EOF

bad "block size not a power of two (100K)" <<EOF
[template b.img]
origin = $T/src/a.img
block_size = 100K @@
EOF

bad "duplicate template" <<EOF
[template a.img] @@
origin = $T/src/a.img
EOF

bad "template name with '/'" <<EOF
[template sub/b.img] @@
origin = $T/src/a.img
EOF

bad "template name '..'" <<EOF
[template ..] @@
origin = $T/src/a.img
EOF

bad "missing origin" <<'EOF'
[template b.img] @@
EOF

bad "missing origin in a [directory] section" <<'EOF'
[directory more] @@
EOF

bad "unknown key (without -f: fails before daemonizing)" nofork <<'EOF'
[template b.img]
origin_url = /nowhere @@
EOF

# Errors within [global] (lines 1-4 of the base config).
# global_bad DESC LINE SED_EXPR: the base config edited by SED_EXPR.
global_bad() {
	n=$((n + 1))
	base | sed "$3" >"$T/bad$n.conf"
	_g_rc=0
	timeout -k 5 20 "$IMGCACHE" -f "$T/bad$n.conf" "$MNT" 2>"$T/bad.err" ||
		_g_rc=$?
	assert_eq "$1: exit status 2" 2 "$_g_rc"
	check "$1: stderr names bad$n.conf:$2" \
		grep -qF "$T/bad$n.conf:$2:" "$T/bad.err"
}
global_bad "unknown key in [global]" 3 '3s/.*/colour = blue/'
global_bad "bad size in [global]" 3 '3s/64K/64X/'
global_bad "bad origin_timeout" 4 '4s/3s/soon/'

rc=0
timeout -k 5 20 "$IMGCACHE" -f "$T/does-not-exist.conf" "$MNT" \
	2>"$T/bad.err" || rc=$?
assert_eq "missing config file: exit status 2" 2 "$rc"
check "missing config file: stderr names it" \
	grep -qF "$T/does-not-exist.conf" "$T/bad.err"
if is_mounted "$MNT"; then
	not_ok "missing config file: something got mounted"
else
	ok "missing config file: nothing mounted"
fi
