#!/bin/sh
# t-basic: a template reads back byte for byte; ls shows it read-only with the
# origin's size and mtime; [directory] sections list their files; every kind
# of modification fails with EROFS.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"
require_fuse

SIZE=$((8 * 1048576 + 12345)) # not a multiple of the block size
make_file_bytes "$T/src/disk.img" "$SIZE"
touch -d '2021-02-03 04:05:06' "$T/src/disk.img"
make_file_bytes "$T/src/dir/extra.img" $((2 * 1048576 + 1))
mkdir -p "$T/src/dir/subdir" # not a regular file: not a template
cp "$T/src/disk.img" "$T/disk.copy"

global_section >"$T/conf"
cat >>"$T/conf" <<EOF

[template disk.img]
origin = $T/src/disk.img

[directory more]
origin = $T/src/dir
EOF

MNT=$T/mnt
start_imgcache "$T/conf" "$MNT"
F=$MNT/disk.img

# --- listing and attributes
names=$(bounded ls -A "$MNT" | tr '\n' ' ')
assert_eq "mount lists exactly the templates" "disk.img extra.img " "$names"
assert_eq "template mode is -r--r--r--" "-r--r--r--" "$(stat -c %A "$F")"
assert_eq "template is a regular file" "regular file" "$(stat -c %F "$F")"
assert_eq "st_size equals the origin's size" "$SIZE" "$(stat -c %s "$F")"
assert_eq "mtime equals the origin's mtime" \
	"$(stat -c %Y "$T/src/disk.img")" "$(stat -c %Y "$F")"
assert_eq "[directory] file has the origin's size" $((2 * 1048576 + 1)) \
	"$(stat -c %s "$MNT/extra.img")"
assert_eq "[directory] file mode is -r--r--r--" "-r--r--r--" \
	"$(stat -c %A "$MNT/extra.img")"
lsline=$(bounded ls -l --time-style=+%s "$MNT" | awk '$NF == "disk.img"')
assert_eq "ls -l shows mode, size and mtime" \
	"-r--r--r-- $SIZE $(stat -c %Y "$T/src/disk.img")" \
	"$(echo "$lsline" | awk '{ print $1, $5, $6 }')"

# --- content
assert_same "cold sequential read equals origin" "$F" "$T/src/disk.img"
assert_same "warm sequential read equals origin" "$F" "$T/src/disk.img"
bounded sha256sum <"$F" >"$T/sum.mnt"
sha256sum <"$T/src/disk.img" >"$T/sum.origin"
assert_same "sha256 through the mount equals origin's" "$T/sum.mnt" "$T/sum.origin"
assert_same "[directory] file reads equal to its origin" "$MNT/extra.img" \
	"$T/src/dir/extra.img"
extract "$F" $((SIZE - 100)) 1000 "$T/tail"
tail -c 100 "$T/src/disk.img" >"$T/tail.origin"
assert_same "read across EOF returns the last 100 bytes only" "$T/tail" \
	"$T/tail.origin"

# --- read-only: each attempt must fail with EROFS
# erofs DESC CMD...: CMD must fail and say "Read-only file system".
erofs() {
	_e_desc=$1
	shift
	if bounded "$@" >"$T/erofs.out" 2>&1; then
		not_ok "$_e_desc: succeeded"
	elif grep -q 'Read-only file system' "$T/erofs.out"; then
		ok "$_e_desc fails with EROFS"
	else
		not_ok "$_e_desc: wrong error: $(head -n 1 "$T/erofs.out")"
	fi
}
# shellcheck disable=SC2016 # $1 expands in the inner shell
erofs "write (echo x > file)" sh -c 'echo x > "$1"' sh "$F"
# shellcheck disable=SC2016
erofs "append (echo x >> file)" sh -c 'echo x >> "$1"' sh "$F"
erofs "touch of a new file" touch "$MNT/new.img"
erofs "truncate" truncate -s 0 "$F"
erofs "chmod" chmod 644 "$F"
erofs "setfattr" setfattr -n user.x -v 1 "$F"
erofs "rm" rm -f "$F"
erofs "mkdir" mkdir "$MNT/d"
erofs "mv" mv "$F" "$MNT/renamed.img"
erofs "touch -m of a template" touch -m "$F"

assert_eq "no new file appeared" "disk.img extra.img " \
	"$(bounded ls -A "$MNT" | tr '\n' ' ')"
assert_eq "size unchanged after write attempts" "$SIZE" "$(stat -c %s "$F")"
assert_same "content unchanged after write attempts" "$F" "$T/disk.copy"
assert_same "origin unchanged" "$T/src/disk.img" "$T/disk.copy"

stop_imgcache "$MNT"
ok "unmounted cleanly"
