#!/usr/bin/env python3
"""faultsrv: a fault-injecting HTTP/1.1 origin for imgcache's tests.

Serves one data file at /MODE/NAME; MODE picks the behaviour, NAME is free
(it is what a template would be called).  Python standard library only.

  ok/        correct: Range, If-Match, If-Range, strong ETag, Last-Modified
  weak/      as ok with a weak ETag (W/"...")
  lmonly/    as ok without ETag (Last-Modified only)
  noval/     as ok without ETag and without Last-Modified
  nohead/    HEAD answers 405, GET as ok
  norange/   200 and the whole body, whatever the Range
  badrange/  206 with a Content-Range one byte off
  short/     206 whose body stops halfway, then the connection closes
  endless/   206 headers, no Content-Length, then bytes until disconnected
  hugelen/   Content-Length 2^60 (HEAD) and a total of 2^60 (GET)
  trickle/   206 headers, then one byte per second
  slow/      as ok, but each answer starts after --delay seconds (default
             1.5) and its body comes 8 KiB every 50 ms: slow, never stalled
  lag/       as ok, but a ranged GET is answered after --delay seconds
             (then at full speed); HEAD and plain GET at once: a busy,
             distant origin whose transfer slots stay taken
  hang/      reads the request and never answers
  404/       404
  503/       503 always
  503once/   503 on the first request of each (method, path, Range)
  429/       429 with Retry-After: 1 on the first request of each
             (method, path, Range), then as ok
  429long/   429 with Retry-After: 3600 always
  redirect/  302 to --redirect-to + /ok/NAME
  loop/      302 to itself
  redirfile/ 302 to file:///etc/passwd (a protocol never to follow)
  gzip/      HEAD as ok; GET answers with Content-Encoding: gzip
  etagflip/  as ok until --flip-after requests to etagflip/ were served,
             then another content (every byte inverted) and another ETag
  lmflip/    as etagflip/ with Last-Modified only
  sw/        as ok, but the version served is chosen by --switch-file at
             every request: "1" (or no file) the data, "2" every byte
             inverted, with another strong ETag; the same size and the
             same Last-Modified for both (a change only the ETag shows)
  swlm/      as sw/ without ETag (a change no validator shows)
  corrupt/   as ok (same ETag, Last-Modified, lengths), but the first byte
             of every 64 KiB block in a ranged answer is inverted: a
             mirror or site cache serving wrong bytes under the right ETag
  Any NAME ending in .imgcache-manifest (in any mode) is answered as ok/
  would with the bytes of --manifest FILE (read at each request), or 404
  without it or while FILE does not exist; an If-None-Match naming its
  ETag gets 304; with --manifest-no-lm, without Last-Modified.
  A ranged GET of sw/ or swlm/ while --fault-file exists consumes it
  (the file is removed) and gets the one bad answer it names: "412",
  "416", "total" (a 206 whose total size is one byte more), "etag" (a 206
  carrying another ETag), "refuse" (the connection is closed unanswered),
  "hang" (the request is read and never answered, as hang/);
  a name ending in "!" (e.g. "412!") is not consumed: every ranged GET
  gets it until the file is removed, and adds a line to FAULT_FILE.taken
  when it arrives

Each request is logged to --log as "METHOD PATH RANGE STATUS BYTES AUTH"
(RANGE is "-" when absent, BYTES the body bytes sent, AUTH "auth" when the
request carried an Authorization header, else "-").  A request in absolute
form (GET http://host/MODE/NAME) is served like /MODE/NAME: faultsrv then
stands in for a forward proxy.

--trace FILE logs when each request is handled, from the server's side:
"T start N INFLIGHT METHOD PATH RANGE" as its headers are read and
"T end N INFLIGHT" when it is answered, T in seconds (CLOCK_MONOTONIC,
microseconds), N the request's number, INFLIGHT the requests being
handled after this one started / ended.  A request counts as ended just
before its last bytes are written (so the client cannot have started
its next request before): the in-flight figure never overstates.  The chosen port is printed
and written to --port-file.  --tls-cert/--tls-key serve HTTPS instead.
SIGTERM stops the server.
"""

import argparse
import email.utils
import gzip
import hashlib
import http.server
import os
import signal
import ssl
import sys
import threading
import time

STOP = threading.Event()
MAX_STALL_S = 120  # hang/trickle/endless never outlive this


class State:
    def __init__(self, args):
        with open(args.data, "rb") as f:
            self.data = f.read()
        mtime = int(os.stat(args.data).st_mtime)
        self.etag = '"%s"' % hashlib.sha1(self.data).hexdigest()[:16]
        self.lm = email.utils.formatdate(mtime, usegmt=True)
        self.flipped = None  # built on first flip
        self.flip_lm = email.utils.formatdate(mtime + 3600, usegmt=True)
        self.redirect_to = args.redirect_to
        self.flip_after = args.flip_after
        self.delay = args.delay
        self.lock = threading.Lock()
        self.seen = set()  # (method, path, range) already failed once
        self.flip_count = {}  # per mode: etagflip/ and lmflip/ apart
        self.switch_file = args.switch_file
        self.fault_file = args.fault_file
        self.manifest = args.manifest
        self.manifest_no_lm = args.manifest_no_lm
        self.logf = open(args.log, "a", buffering=1) if args.log else None
        self.tracef = open(args.trace, "a", buffering=1) if args.trace \
            else None
        self.inflight = 0
        self.nreq = 0

    def first_time(self, key):
        with self.lock:
            if key in self.seen:
                return False
            self.seen.add(key)
            return True

    def flip_version(self, mode):
        """(content, etag, lm) of etagflip/lmflip for this request."""
        with self.lock:
            n = self.flip_count.get(mode, 0) + 1
            self.flip_count[mode] = n
            flipped = n > self.flip_after
            if flipped and self.flipped is None:
                table = bytes(range(255, -1, -1))
                self.flipped = self.data.translate(table)
        if not flipped:
            return self.data, self.etag, self.lm
        etag = '"%s"' % hashlib.sha1(self.flipped).hexdigest()[:16]
        return self.flipped, etag, self.flip_lm

    def inverted(self):
        with self.lock:
            if self.flipped is None:
                table = bytes(range(255, -1, -1))
                self.flipped = self.data.translate(table)
        return self.flipped

    def switch_version(self):
        """(content, etag) of sw/ for this request."""
        v = "1"
        if self.switch_file:
            try:
                with open(self.switch_file) as f:
                    v = f.read().strip() or "1"
            except OSError:
                pass
        if v != "2":
            return self.data, self.etag
        data = self.inverted()
        return data, '"%s"' % hashlib.sha1(data).hexdigest()[:16]

    def take_fault(self):
        """The fault of --fault-file, or None: consumed unless it ends
        with "!" (then it lasts until the file is removed)."""
        if not self.fault_file:
            return None
        with self.lock:
            try:
                with open(self.fault_file) as f:
                    fault = f.read().strip()
                if fault.endswith("!"):
                    with open(self.fault_file + ".taken", "a") as f:
                        f.write(fault[:-1] + "\n")
                    return fault[:-1]
                os.unlink(self.fault_file)
            except OSError:
                return None
        return fault

    def log(self, line):
        if self.logf:
            with self.lock:
                self.logf.write(line + "\n")

    def trace_start(self, method, path, rng):
        with self.lock:
            self.nreq += 1
            self.inflight += 1
            if self.tracef:
                self.tracef.write("%.6f start %d %d %s %s %s\n" % (
                    time.monotonic(), self.nreq, self.inflight, method,
                    path, rng))
            return self.nreq

    def trace_end(self, n):
        with self.lock:
            self.inflight -= 1
            if self.tracef:
                self.tracef.write("%.6f end %d %d\n" % (
                    time.monotonic(), n, self.inflight))


def parse_range(header, size):
    """(start, end) inclusive, None without a usable header, 'bad' if
    unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    a, _, b = header[6:].partition("-")
    try:
        if a == "":
            n = int(b)
            return (max(0, size - n), size - 1) if n > 0 else "bad"
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "bad"
    return start, min(end, size - 1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultsrv/1"

    def log_message(self, fmt, *args):
        pass  # our own access log instead

    def do_HEAD(self):
        self.dispatch(head=True)

    def do_GET(self):
        self.dispatch(head=False)

    # -- plumbing

    def finish_log(self, status, nbytes):
        rng = self.headers.get("Range") or "-"
        auth = "auth" if self.headers.get("Authorization") else "-"
        self.server.state.log("%s %s %s %d %d %s" % (
            self.command, self.path, rng.replace(" ", ""), status, nbytes,
            auth))

    def traced_end(self):
        """Note the request's end in the trace (once)."""
        n = getattr(self, "trace_n", None)
        if n is not None:
            self.trace_n = None
            self.server.state.trace_end(n)

    def send(self, status, headers, body=b"", head=False, pace=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        nbody = 0 if head else len(body)
        if nbody == 0:
            self.traced_end()
        self.end_headers()
        sent = 0
        step = pace[0] if pace else 65536
        try:
            for i in range(0, nbody, step):
                if i + step >= nbody:
                    self.traced_end()
                self.wfile.write(body[i:i + step])
                sent += len(body[i:i + step])
                if pace:
                    self.wfile.flush()
                    self.stall(pace[1])
        except OSError:
            self.close_connection = True  # the client stopped reading
        self.finish_log(status, sent)

    def stall(self, seconds):
        """Sleep in small steps so SIGTERM is honoured quickly."""
        end = time.monotonic() + seconds
        while not STOP.is_set() and time.monotonic() < end:
            time.sleep(0.05)

    # -- the correct server, parameterised

    def serve(self, data, etag, lm, head, ranges=True, extra=(), pace=None):
        size = len(data)
        h = list(extra)
        if etag:
            h.append(("ETag", etag))
        if lm:
            h.append(("Last-Modified", lm))
        h.append(("Accept-Ranges", "bytes" if ranges else "none"))
        im = self.headers.get("If-Match")
        if ranges and im and im.strip() != "*" and (
                not etag or etag.startswith("W/") or
                etag not in [t.strip() for t in im.split(",")]):
            return self.send(412, h, head=head)
        rng = parse_range(self.headers.get("Range"), size) if ranges else None
        ir = self.headers.get("If-Range")
        if rng is not None and ir is not None:
            strong_ok = etag and not etag.startswith("W/") and ir == etag
            if not (strong_ok or (lm and ir == lm)):
                rng = None  # changed: whole new content
        if rng == "bad":
            h.append(("Content-Range", "bytes */%d" % size))
            return self.send(416, h, head=head)
        if rng is None:
            return self.send(200, h, data, head, pace)
        a, b = rng
        h.append(("Content-Range", "bytes %d-%d/%d" % (a, b, size)))
        return self.send(206, h, data[a:b + 1], head, pace)

    def ok(self, head, **kw):
        st = self.server.state
        return self.serve(st.data, st.etag, st.lm, head, **kw)

    # -- behaviours

    def dispatch(self, head):
        self.trace_n = self.server.state.trace_start(
            self.command, self.path, self.headers.get("Range") or "-")
        try:
            return self.dispatch_mode(head)
        finally:
            self.traced_end()

    def dispatch_mode(self, head):
        path = self.path.split("?", 1)[0]
        if path.startswith("http://"):
            # A proxy request (absolute form): serve it as if we were the
            # host named, so tests can check that a proxy is used.
            path = "/" + path[7:].partition("/")[2]
        parts = path.lstrip("/").split("/", 1)
        mode = parts[0]
        name = parts[1] if len(parts) > 1 else "file"
        key = (self.command, path, self.headers.get("Range"))
        if name.endswith(".imgcache-manifest"):
            return self.m_manifest(head)
        fn = getattr(self, "m_" + mode.replace("-", "_"), None)
        if fn is None:
            return self.send(404, [], b"no such mode\n", head)
        return fn(head, name, key)

    def m_ok(self, head, name, key):
        self.ok(head)

    def m_manifest(self, head):
        try:
            with open(self.server.state.manifest or "", "rb") as f:
                data = f.read()
        except OSError:
            return self.send(404, [], b"no manifest\n", head)
        etag = '"m%s"' % hashlib.sha1(data).hexdigest()[:16]
        inm = self.headers.get("If-None-Match")
        if inm and etag in [t.strip() for t in inm.split(",")]:
            return self.send(304, [("ETag", etag)], head=True)
        lm = None if self.server.state.manifest_no_lm else \
            self.server.state.lm
        self.serve(data, etag, lm, head)

    def m_corrupt(self, head, name, key):
        st = self.server.state
        rng = parse_range(self.headers.get("Range"), len(st.data))
        if head or rng is None or rng == "bad":
            return self.ok(head)
        a, b = rng
        body = bytearray(st.data[a:b + 1])
        for i in range((-a) % 65536, len(body), 65536):
            body[i] ^= 0xff
        h = [("ETag", st.etag), ("Last-Modified", st.lm),
             ("Accept-Ranges", "bytes"),
             ("Content-Range", "bytes %d-%d/%d" % (a, b, len(st.data)))]
        self.send(206, h, bytes(body))

    def m_weak(self, head, name, key):
        st = self.server.state
        self.serve(st.data, "W/" + st.etag, st.lm, head)

    def m_lmonly(self, head, name, key):
        st = self.server.state
        self.serve(st.data, None, st.lm, head)

    def m_noval(self, head, name, key):
        self.serve(self.server.state.data, None, None, head)

    def m_nohead(self, head, name, key):
        if head:
            return self.send(405, [("Allow", "GET")], head=True)
        self.ok(head)

    def m_norange(self, head, name, key):
        self.ok(head, ranges=False)

    def m_404(self, head, name, key):
        self.send(404, [], b"not found\n", head)

    def m_503(self, head, name, key):
        self.send(503, [], b"busy\n", head)

    def m_503once(self, head, name, key):
        if self.server.state.first_time(key):
            return self.send(503, [], b"busy\n", head)
        self.ok(head)

    def m_429(self, head, name, key):
        if self.server.state.first_time(key):
            return self.send(429, [("Retry-After", "1")], b"slow down\n", head)
        self.ok(head)

    def m_429long(self, head, name, key):
        self.send(429, [("Retry-After", "3600")], b"slow down\n", head)

    def m_redirect(self, head, name, key):
        to = self.server.state.redirect_to
        if not to:
            return self.send(500, [], b"no --redirect-to\n", head)
        self.send(302, [("Location", to.rstrip("/") + "/ok/" + name)],
                  head=head)

    def m_loop(self, head, name, key):
        self.send(302, [("Location", "/loop/" + name)], head=head)

    def m_redirfile(self, head, name, key):
        self.send(302, [("Location", "file:///etc/passwd")], head=head)

    def m_hugelen(self, head, name, key):
        st = self.server.state
        huge = 1 << 60
        h = [("ETag", st.etag), ("Last-Modified", st.lm)]
        rng = parse_range(self.headers.get("Range"), huge)
        if head or rng is None or rng == "bad":
            h.append(("Content-Length", str(huge)))
            self.send(200, h, head=True)  # headers only, then close
            self.close_connection = True
            return
        a, b = rng
        b = min(b, a + len(st.data) - 1)
        h.append(("Content-Range", "bytes %d-%d/%d" % (a, b, huge)))
        self.send(206, h, (st.data * 2)[:b - a + 1], head)

    def range_or_200(self, head):
        """Parse Range for the faulty 206 modes; answer plain when absent."""
        st = self.server.state
        rng = parse_range(self.headers.get("Range"), len(st.data))
        if rng is None or rng == "bad" or head:
            self.ok(head)
            return None
        return rng

    def m_badrange(self, head, name, key):
        rng = self.range_or_200(head)
        if rng is None:
            return
        st = self.server.state
        a, b = rng
        h = [("ETag", st.etag), ("Last-Modified", st.lm),
             ("Content-Range", "bytes %d-%d/%d" % (a + 1, b + 1,
                                                  len(st.data)))]
        self.send(206, h, st.data[a:b + 1], head)

    def partial_headers(self, rng, length=True):
        st = self.server.state
        a, b = rng
        self.send_response(206)
        self.send_header("ETag", st.etag)
        self.send_header("Last-Modified", st.lm)
        self.send_header("Content-Range",
                         "bytes %d-%d/%d" % (a, b, len(st.data)))
        if length:
            self.send_header("Content-Length", str(b - a + 1))
        else:
            self.send_header("Connection", "close")
        self.end_headers()

    def m_short(self, head, name, key):
        rng = self.range_or_200(head)
        if rng is None:
            return
        a, b = rng
        body = self.server.state.data[a:b + 1]
        self.partial_headers(rng)
        half = body[:len(body) // 2]
        self.wfile.write(half)
        self.wfile.flush()
        self.close_connection = True
        self.finish_log(206, len(half))

    def stream(self, chunk, delay):
        sent = 0
        end = time.monotonic() + MAX_STALL_S
        try:
            while not STOP.is_set() and time.monotonic() < end:
                self.wfile.write(chunk)
                self.wfile.flush()
                sent += len(chunk)
                if delay:
                    self.stall(delay)
        except OSError:
            pass  # the client gave up: that is the point
        self.close_connection = True
        return sent

    def m_endless(self, head, name, key):
        rng = self.range_or_200(head)
        if rng is None:
            return
        self.partial_headers(rng, length=False)
        self.finish_log(206, self.stream(self.server.state.data[:65536], 0))

    def m_trickle(self, head, name, key):
        rng = self.range_or_200(head)
        if rng is None:
            return
        self.partial_headers(rng)
        self.finish_log(206, self.stream(b"x", 1.0))

    def m_slow(self, head, name, key):
        self.stall(self.server.state.delay)
        self.ok(head, pace=(8192, 0.05))

    def m_lag(self, head, name, key):
        if not head and self.headers.get("Range"):
            self.stall(self.server.state.delay)
        self.ok(head)

    def m_hang(self, head, name, key):
        self.stall(MAX_STALL_S)
        self.close_connection = True
        self.finish_log(0, 0)

    def m_gzip(self, head, name, key):
        st = self.server.state
        if head:
            return self.ok(head)
        rng = parse_range(self.headers.get("Range"), len(st.data))
        h = [("ETag", st.etag), ("Last-Modified", st.lm),
             ("Content-Encoding", "gzip")]
        if rng is None or rng == "bad":
            return self.send(200, h, gzip.compress(st.data, 1), head)
        a, b = rng
        h.append(("Content-Range", "bytes %d-%d/%d" % (a, b, len(st.data))))
        self.send(206, h, gzip.compress(st.data[a:b + 1], 1), head)

    def m_etagflip(self, head, name, key):
        data, etag, lm = self.server.state.flip_version("etagflip")
        self.serve(data, etag, lm, head)

    def switched(self, head, with_etag):
        st = self.server.state
        data, etag = st.switch_version()
        if not with_etag:
            etag = None
        rng = parse_range(self.headers.get("Range"), len(data))
        fault = st.take_fault() if rng not in (None, "bad") and not head \
            else None
        if fault is None:
            return self.serve(data, etag, st.lm, head)
        size = len(data)
        h = [("Last-Modified", st.lm)] + ([("ETag", etag)] if etag else [])
        if fault == "412":
            return self.send(412, h, head=head)
        if fault == "416":
            return self.send(416, h + [("Content-Range", "bytes */%d" % size)],
                             head=head)
        if fault == "refuse":
            self.close_connection = True
            self.finish_log(0, 0)
            return None
        if fault == "hang":
            return self.m_hang(head, None, None)
        a, b = rng
        if fault == "total":
            h.append(("Content-Range", "bytes %d-%d/%d" % (a, b, size + 1)))
        else:  # "etag": one stale node behind a load balancer
            h = [("ETag", '"other-node"'), ("Last-Modified", st.lm),
                 ("Content-Range", "bytes %d-%d/%d" % (a, b, size))]
        return self.send(206, h, data[a:b + 1], head)

    def m_sw(self, head, name, key):
        self.switched(head, True)

    def m_swlm(self, head, name, key):
        self.switched(head, False)

    def m_lmflip(self, head, name, key):
        data, _, lm = self.server.state.flip_version("lmflip")
        self.serve(data, None, lm, head)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def on_term(signum, frame):
    STOP.set()
    raise KeyboardInterrupt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="file to serve")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--log", help="access log file")
    p.add_argument("--trace", help="arrival/end trace file (see above)")
    p.add_argument("--redirect-to", help="base URL for redirect/")
    p.add_argument("--flip-after", type=int, default=3)
    p.add_argument("--switch-file", help="version of sw/: 1 or 2")
    p.add_argument("--fault-file", help="one-shot fault for sw/, swlm/")
    p.add_argument("--manifest", help="served for NAME.imgcache-manifest")
    p.add_argument("--manifest-no-lm", action="store_true",
                   help="serve the manifest without Last-Modified")
    p.add_argument("--delay", type=float, default=1.5,
                   help="seconds before slow/ answers")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    args = p.parse_args()

    srv = Server(("127.0.0.1", args.port), Handler)
    srv.state = State(args)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    print(port, flush=True)
    signal.signal(signal.SIGTERM, on_term)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    STOP.set()
    srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
