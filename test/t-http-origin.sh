#!/bin/sh
# t-http-origin: the HTTP origin (fs/origin/origin-http.c) against a real server,
# nginx, driven by test/origin-get without the daemon: stat, 200 random
# block-aligned reads compared byte for byte, If-Match / If-Range on every
# read, a changed file detected (-ESTALE) with an ETag and with
# Last-Modified only, concurrent reads over few reused connections
# (max_connections), and the manifest of a [directory] URL.
# SKIP (77) without nginx, curl or python3.
# shellcheck source=test/lib.sh
. "${top_srcdir:-$(dirname "$0")/..}/test/lib.sh"

ORIGIN_GET=${ORIGIN_GET:-$top_builddir/test/origin-get}
[ -x "$ORIGIN_GET" ] || fail "$ORIGIN_GET is not built (run make check)"
require_nginx
command -v curl >/dev/null 2>&1 || skip "curl not installed"
require_local_http

SIZE=$((16 * 1048576 + 12345)) # the last block is short
make_file_bytes "$T/www/t.img" "$SIZE"
mkdir -p "$T/www/noetag" "$T/www/dir" "$T/www/empty" "$T/nginx/tmp"
cp "$T/www/t.img" "$T/www/noetag/t.img"
printf '# templates of dir\n\na.img\r\n  b.img  \n../evil\nc/d\n#x.img\nlast.img' \
	>"$T/www/dir/manifest"

# nginx's access log, fields split by '|': "connection request_number",
# request line, status, body bytes, Range, If-Match, If-Range,
# Accept-Encoding.
write_nginx_conf() {
	nginx_config "$PORT" "log_format t escape=none '\$connection \$connection_requests|\$request|'
                 '\$status|\$body_bytes_sent|\$http_range|\$http_if_match|'
                 '\$http_if_range|\$http_accept_encoding';
    access_log $T/nginx/access.log t;" "location /noetag/ { etag off; }"
}

answers() {
	curl -sf --noproxy '*' -r 0-0 -o /dev/null "http://127.0.0.1:$PORT/t.img"
}

# Start nginx on a free port (a few tries: another process may take the
# port between free_port and nginx's bind).  Sets PORT and NGINX_PID.
start_nginx() {
	for _try in 1 2 3; do
		PORT=$(free_port)
		write_nginx_conf
		"$NGINX" -p "$T/nginx/" -c "$T/nginx/nginx.conf" \
			>"$T/nginx/stderr" 2>&1 &
		NGINX_PID=$!
		_register "$NGINX_PID" -
		if wait_for 10 answers; then
			return 0
		fi
		kill -TERM "$NGINX_PID" 2>/dev/null || true
		_wait_exit "$NGINX_PID" 5 || kill -KILL "$NGINX_PID" 2>/dev/null
		_unregister "$NGINX_PID"
	done
	show_log "$T/nginx/error.log"
	show_log "$T/nginx/stderr"
	fail "nginx did not start"
}


# get ARGS...: run origin-get; stdout in $T/out, stderr in $T/err, exit
# status in RC.
get() {
	RC=0
	bounded "$ORIGIN_GET" "$@" >"$T/out" 2>"$T/err" || RC=$?
}

field() { sed -n "s/^$1 //p" "$T/out"; }

start_nginx
U=http://127.0.0.1:$PORT

# --- stat
get "$U/t.img" stat
assert_eq "stat succeeds" 0 "$RC"
assert_eq "stat size equals the file's" "$SIZE" "$(field size)"
V=$(field validator)
M=$(field mtime_ns)
case $V in
'etag:"'*) ok "validator is nginx's strong ETag ($V)" ;;
*) not_ok "validator is nginx's strong ETag (got '$V')" ;;
esac
assert_eq "mtime from Last-Modified" \
	"$(($(stat -c %Y "$T/www/t.img") * 1000000000))" "$M"

# --- 200 random block-aligned reads, 1 to 4 blocks, clipped at the end
SEED=${SEED:-$(date +%s)}
note "random reads: SEED=$SEED"
awk -v seed="$SEED" -v size="$SIZE" -v bs="$BS" 'BEGIN {
	srand(seed); nb = int((size + bs - 1) / bs)
	for (i = 0; i < 199; i++) {
		b = int(rand() * nb); off = b * bs; len = (1 + int(rand() * 4)) * bs
		if (off + len > size) len = size - off
		print off, len
	}
	print (nb - 1) * bs, size - (nb - 1) * bs  # the short last block
}' >"$T/reads"
bad=0
t0=$(now_ms)
mark=$(wc -l <"$T/nginx/access.log")
while read -r off len; do
	get --validator "$V" --size "$SIZE" --mtime-ns "$M" "$U/t.img" \
		read "$off" "$len" "$T/got"
	extract "$T/www/t.img" "$off" "$len" "$T/want"
	if [ "$RC" != 0 ] || ! cmp -s "$T/got" "$T/want"; then
		bad=$((bad + 1))
		note "read $off+$len: rc $RC $(cat "$T/out")"
	fi
done <"$T/reads"
assert_eq "200 random reads equal the file's bytes" 0 "$bad"
note "200 reads (one process each) in $(($(now_ms) - t0)) ms"
tail -n +"$((mark + 1))" "$T/nginx/access.log" >"$T/reads.log"
assert_eq "each read is one 206, nothing else asked" "200 200" \
	"$(awk -F'|' '{ n++; if ($3 == 206) k++ } END { print n, k }' \
		"$T/reads.log")"
badhdr=$(awk -F'|' -v v="${V#etag:}" '
	$5 !~ /^bytes=[0-9]+-[0-9]+$/ || $6 != v || $8 != "identity" { n++ }
	END { print n + 0 }' "$T/reads.log")
assert_eq "every GET has Range, If-Match and Accept-Encoding: identity" \
	0 "$badhdr"
misaligned=$(awk -F'|' -v bs="$BS" '{ split($5, r, /[=-]/)
	if (r[2] % bs) n++ } END { print n + 0 }' "$T/reads.log")
assert_eq "every range starts on a block boundary" 0 "$misaligned"

# --- concurrency: 8 threads, 400 reads, at most 2 connections
mark=$(wc -l <"$T/nginx/access.log")
t0=$(now_ms)
get --max-connections 2 "$U/t.img" stress 8 400 "$BS" "$T/www/t.img"
assert_eq "400 concurrent reads (8 threads) all equal the file" \
	"400 reads, 0 failed" "$(head -n 1 "$T/out")"
note "stress: $(($(now_ms) - t0)) ms"
conns=$(tail -n +"$((mark + 1))" "$T/nginx/access.log" |
	awk '{ print $1 }' | sort -u | wc -l)
reqs=$(tail -n +"$((mark + 1))" "$T/nginx/access.log" | wc -l)
note "stress: $reqs requests over $conns connections"
assert_le "max_connections 2: connections used for 401 requests" "$conns" 2

# --- Last-Modified only (etag off): If-Range
get "$U/noetag/t.img" stat
LV=$(field validator)
LM=$(field mtime_ns)
case $LV in
lm:*) ok "without ETag the validator is Last-Modified" ;;
*) not_ok "without ETag the validator is Last-Modified (got '$LV')" ;;
esac
get --validator "$LV" --size "$SIZE" "$U/noetag/t.img" read 131072 65536 \
	"$T/got"
extract "$T/www/t.img" 131072 65536 "$T/want"
check "read with If-Range (Last-Modified)" cmp -s "$T/got" "$T/want"
check "If-Range carries the Last-Modified date" \
	grep -qF "|${LV#lm:}|identity" "$T/nginx/access.log"

# --- the file changes: -ESTALE, never the new bytes under the old validator
write_at "$T/www/t.img" 0 65536
touch -d '+1 minute' "$T/www/t.img"
write_at "$T/www/noetag/t.img" 0 65536
touch -d '+1 minute' "$T/www/noetag/t.img"
get --validator "$V" --size "$SIZE" --mtime-ns "$M" "$U/t.img" read 0 65536 \
	"$T/got"
assert_eq "changed file, old ETag: Stale file handle" \
	"error: Stale file handle" "$(cat "$T/out")"
get --validator "$LV" --size "$SIZE" --mtime-ns "$LM" "$U/noetag/t.img" \
	read 0 65536 "$T/got"
assert_eq "changed file, old Last-Modified: Stale file handle" \
	"error: Stale file handle" "$(cat "$T/out")"
get "$U/t.img" stat
check "stat sees the new validator" test "$(field validator)" != "$V"

# --- gone
get "$U/missing.img" stat
assert_eq "missing file: No such file or directory" \
	"error: No such file or directory" "$(cat "$T/out")"

# --- manifest of a [directory] URL
get "$U/dir" list
assert_eq "manifest: names, comments and invalid names skipped" \
	"a.img b.img last.img " "$(tr '\n' ' ' <"$T/out")"
check "manifest: invalid names are warned about" \
	grep -q "invalid template name" "$T/err"
get "$U/empty/" list
assert_eq "no manifest: No such file or directory" \
	"error: No such file or directory" "$(cat "$T/out")"

stop_pid "$NGINX_PID"
