#!/usr/bin/env python3
"""update.py -- helpers of `make bench-update` (test/bench/update.sh).

Subcommands (all deterministic for a given seed):
  pick SIZE SEED OUTDIR   choose real files of this machine (/usr/lib,
                          /usr/share): OUTDIR/base (paths, about 70% of SIZE
                          bytes), OUTDIR/pkg (one Debian package's files,
                          left out of base), OUTDIR/new (files an update
                          adds), OUTDIR/changed (base files an update
                          rewrites in place), OUTDIR/ws (base files a VM
                          reads), OUTDIR/pkgname
  stage LIST DIR [SRC]    DIR/PATH for every listed PATH: a hard link to
                          SRC/PATH (the files are only read), a copy across
                          filesystems; LIST rewritten with those staged
  blocks RAW LIST OUT     the ext4 data blocks (4K) of each listed file of
                          the raw image RAW (debugfs), "PATH BLK..." a line
  rewrite RAW BLOCKS SEED overwrite, in place, every 4K block listed in
                          BLOCKS (an OUT of `blocks`) with new bytes
  trace QCOW2 BLOCKS OUT  the host reads a qcow2 reader (QEMU) makes to read
                          those guest blocks: header, L1, each L2 table once,
                          then the data clusters, as an imgcache-trace v1
  ideal BS OUT M_NEW T_NEW [M_OLD T_OLD]...
                          for the blocks trace T_NEW reads of the template
                          of manifest M_NEW: their bytes, their non-zero
                          bytes, and the bytes of those whose hash is not
                          among the blocks the (M_OLD, T_OLD) pairs read
                          (what a perfect delta fill must still fetch);
                          also whose hash is nowhere in M_OLD
  share A B               64K blocks of file B whose content is in file A:
                          at the same offset, at another offset only,
                          nowhere; zero blocks apart
"""
import hashlib
import os
import random
import re
import struct
import subprocess
import sys

BLK = 4096
OK_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
               "0123456789._+-/@,=:")
MAX_FILE = 32 << 20


def plain(path):
    return all(c in OK_CHARS for c in path)


def walk(roots):
    out = []
    for root in roots:
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(d, f)
                if not plain(p):
                    continue
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if (st.st_mode & 0o170000) != 0o100000:
                    continue
                if st.st_size == 0 or st.st_size > MAX_FILE:
                    continue
                if not os.access(p, os.R_OK):
                    continue
                out.append((p, st.st_size))
    return out


def dpkg_pick(target, roots):
    """One installed package whose regular files under roots add up closest
    to target bytes (at least 5 files): (name, [paths])."""
    try:
        q = subprocess.run(["dpkg-query", "-W", "-f",
                            "${Package}\t${Installed-Size}\n"],
                           capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, []
    cands = []
    for line in q.splitlines():
        try:
            name, kib = line.split("\t")
            kib = int(kib)
        except ValueError:
            continue
        cands.append((abs(kib * 1024 - target), name))
    cands.sort()
    for _, name in cands[:40]:
        try:
            files = subprocess.run(["dpkg", "-L", name], capture_output=True,
                                   text=True, check=True).stdout.split("\n")
        except (OSError, subprocess.CalledProcessError):
            continue
        got = []
        for p in files:
            if not any(p.startswith(r + "/") for r in roots) or not plain(p):
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if (st.st_mode & 0o170000) == 0o100000 and 0 < st.st_size <= MAX_FILE \
                    and os.access(p, os.R_OK):
                got.append(p)
        tot = sum(os.path.getsize(p) for p in got)
        if len(got) >= 5 and target / 3 <= tot <= target * 3:
            return name, sorted(got)
    return None, []


def cmd_pick(size, seed, outdir):
    size, seed = int(size), int(seed)
    roots = ["/usr/lib", "/usr/share"]
    allf = walk(roots)
    pkgname, pkg = dpkg_pick(size * 3 // 100, roots)
    r = random.Random(seed)
    if not pkg:  # no dpkg: a directory of real files stands for a package
        dirs = sorted({os.path.dirname(p) for p, _ in allf})
        r.shuffle(dirs)
        for d in dirs:
            fs = [p for p, s in allf if os.path.dirname(p) == d]
            tot = sum(s for p, s in allf if os.path.dirname(p) == d)
            if len(fs) >= 5 and size // 100 <= tot <= size // 10:
                pkgname, pkg = "dir:" + d, fs
                break
    pkgset = set(pkg)
    pool = [(p, s) for p, s in allf if p not in pkgset]
    r.shuffle(pool)
    base, new, tot, i = [], [], 0, 0
    # ext4's own blocks (journal, inode tables) and the files' last blocks
    # weigh more in a small image.
    budget = size * (70 if size >= 512 << 20 else 50) // 100
    while i < len(pool) and tot < budget:
        p, s = pool[i]
        i += 1
        if tot + s > budget + (1 << 20):
            continue
        base.append((p, s))
        tot += s
    taken = {p for p, _ in base}
    ntot = 0
    for p, s in pool[i:]:
        if ntot >= size * 15 // 1000:
            break
        if p in taken:
            continue
        new.append(p)
        ntot += s
    # changed: about 3% of the base's bytes, rewritten in place; ws: about
    # BENCH_UPDATE_WS% (default 10) of them, read whole.
    wsp = float(os.environ.get("BENCH_UPDATE_WS", "10"))
    order = base[:]
    r.shuffle(order)
    changed, ctot = [], 0
    for p, s in order:
        if ctot >= tot * 3 // 100:
            break
        changed.append(p)
        ctot += s
    r.shuffle(order)
    ws, wtot = [], 0
    for p, s in order:
        if wtot >= tot * wsp / 100:
            break
        ws.append(p)
        wtot += s
    os.makedirs(outdir, exist_ok=True)
    for name, lst in (("base", sorted(p for p, _ in base)), ("pkg", pkg),
                      ("new", new), ("changed", changed), ("ws", ws)):
        with open(os.path.join(outdir, name), "w") as f:
            f.write("".join(p + "\n" for p in lst))
    with open(os.path.join(outdir, "pkgname"), "w") as f:
        f.write("%s %d files %d bytes\n" % (pkgname or "none", len(pkg),
                                            sum(os.path.getsize(p) for p in pkg)))
    print("base %d files %d bytes; pkg %s %d files; new %d files %d bytes; "
          "changed %d files %d bytes; ws %d files %d bytes"
          % (len(base), tot, pkgname, len(pkg), len(new), ntot, len(changed),
             ctot, len(ws), wtot))


def cmd_stage(lst, d, src=""):
    """Hard links (copies across filesystems) of the listed files under d;
    files gone meanwhile (this machine's packages change) are dropped from
    the list, which is rewritten with those staged."""
    kept = []
    for p in (l.rstrip("\n") for l in open(lst) if l.strip()):
        dst = d + p
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(src + p, dst)
        except FileExistsError:
            pass
        except OSError:
            if subprocess.run(["cp", "-p", src + p, dst],
                              stderr=subprocess.DEVNULL).returncode != 0:
                continue
        kept.append(p)
    with open(lst + ".tmp", "w") as f:
        f.write("".join(p + "\n" for p in kept))
    os.replace(lst + ".tmp", lst)


EXT = re.compile(r"^\s*\d+/\s*\d+\s+\d+/\s*\d+\s+(\d+)\s*-\s*(\d+)\s+(\d+)\s*-\s*(\d+)\s+(\d+)")


def cmd_blocks(raw, lst, out):
    """The data blocks of each file, in logical order, from its leaf extents
    (debugfs "ex -l"): "blocks" would list the extent tree's own blocks
    too, and rewriting those breaks the file system."""
    paths = [l.rstrip("\n") for l in open(lst) if l.strip()]
    cmds = "".join("ex -l %s\n" % p for p in paths)
    res = subprocess.run(["debugfs", "-f", "-", raw], input=cmds,
                         capture_output=True, text=True, check=True).stdout
    cur, blocks = None, {}
    for line in res.splitlines():
        if line.startswith("debugfs: ex -l "):
            cur = line[len("debugfs: ex -l "):]
            blocks[cur] = []
            continue
        m = EXT.match(line)
        if cur is not None and m:
            pa, pb = int(m.group(3)), int(m.group(4))
            blocks[cur] += range(pa, pb + 1)
    with open(out, "w") as f:
        for p in paths:
            f.write(p + " " + " ".join(map(str, blocks.get(p, []))) + "\n")
    missing = [p for p in paths if not blocks.get(p)]
    if missing:
        sys.exit("update.py: no blocks for %d files, e.g. %s" % (len(missing), missing[0]))


def read_blocks(fn):
    for line in open(fn):
        parts = line.split()
        if parts:
            yield parts[0], [int(x) for x in parts[1:]]


def cmd_rewrite(raw, blocks, seed):
    r = random.Random(int(seed))
    with open(raw, "r+b") as f:
        for _, bl in read_blocks(blocks):
            for b in bl:
                f.seek(b * BLK)
                f.write(r.randbytes(BLK))


def qcow2_map(fn):
    with open(fn, "rb") as f:
        h = f.read(104)
        if h[:4] != b"QFI\xfb":
            sys.exit("update.py: %s is not qcow2" % fn)
        cbits = struct.unpack(">I", h[20:24])[0]
        l1_size = struct.unpack(">I", h[36:40])[0]
        l1_off = struct.unpack(">Q", h[40:48])[0]
        f.seek(l1_off)
        l1 = struct.unpack(">%dQ" % l1_size, f.read(8 * l1_size))
        return cbits, l1_off, l1_size, [e & 0x00fffffffffffe00 for e in l1]


def cmd_trace(qcow2, blocks, out):
    cbits, l1_off, l1_size, l1 = qcow2_map(qcow2)
    cs = 1 << cbits
    l2n = cs // 8
    reads = [(0, BLK)]
    l1len = (l1_size * 8 + BLK - 1) // BLK * BLK
    reads.append((l1_off, l1len))
    l2cache, seen_l2 = {}, set()
    with open(qcow2, "rb") as f:
        def l2(i):
            if i not in l2cache:
                if l1[i] == 0:
                    l2cache[i] = None
                else:
                    f.seek(l1[i])
                    l2cache[i] = struct.unpack(">%dQ" % l2n, f.read(cs))
            return l2cache[i]
        pend = None  # (host offset, length) being merged
        for _, bl in read_blocks(blocks):
            for b in bl:
                g = b * BLK
                gc = g >> cbits
                i1, i2 = gc // l2n, gc % l2n
                if i1 not in seen_l2 and l1[i1]:
                    seen_l2.add(i1)
                    if pend:
                        reads.append(pend)
                        pend = None
                    reads.append((l1[i1], cs))
                t = l2(i1)
                e = t[i2] if t else 0
                host = e & 0x00fffffffffffe00
                if e & (1 << 62):
                    sys.exit("update.py: compressed cluster in %s" % qcow2)
                if host == 0:
                    continue  # reads as zeros: QEMU reads nothing
                h = host + (g & (cs - 1))
                if pend and pend[0] + pend[1] == h and pend[1] < (1 << 20):
                    pend = (pend[0], pend[1] + BLK)
                else:
                    if pend:
                        reads.append(pend)
                    pend = (h, BLK)
        if pend:
            reads.append(pend)
    with open(out, "w") as o:
        o.write("# imgcache-trace v1\n# template %s block %d\n" % (os.path.basename(qcow2), cs))
        o.write("# T_US OFFSET LENGTH, in arrival order\n")
        for k, (off, ln) in enumerate(reads):
            o.write("%d %d %d\n" % (k * 100, off, ln))


def manifest(fn):
    with open(fn, "rb") as f:
        d = f.read()
    if d[:8] != b"ICMANIF1":
        sys.exit("update.py: %s is not a manifest" % fn)
    size, bs = struct.unpack("<QI", d[16:28])
    n = struct.unpack("<Q", d[32:40])[0]
    ent = [d[64 + 32 * i:96 + 32 * i] for i in range(n)]
    return size, bs, ent


def trace_blocks(fn, bs, size):
    s = set()
    for line in open(fn):
        if line.startswith("#") or not line.strip():
            continue
        _, off, ln = (int(x) for x in line.split())
        for k in range(off // bs, (off + ln - 1) // bs + 1):
            s.add(k)
    return {k for k in s if k * bs < size}


ZERO = bytes(32)


def cmd_ideal(bs, out, m_new, t_new, *old):
    bs = int(bs)
    size, mbs, ent = manifest(m_new)
    assert mbs == bs
    ws = trace_blocks(t_new, bs, size)
    blen = lambda k: min(bs, size - k * bs)
    avail, anywhere = set(), set()
    for mo, to in zip(old[0::2], old[1::2]):
        s2, b2, e2 = manifest(mo)
        anywhere.update(h for h in e2 if h != ZERO)
        avail.update(e2[k] for k in trace_blocks(to, b2, s2) if e2[k] != ZERO)
    tot = sum(blen(k) for k in ws)
    nz = sum(blen(k) for k in ws if ent[k] != ZERO)
    changed = sum(blen(k) for k in ws if ent[k] != ZERO and ent[k] not in avail)
    nowhere = sum(blen(k) for k in ws if ent[k] != ZERO and ent[k] not in anywhere)
    # Blocks of the working set with the same content as one of their own
    # set: fetched once, copied for the rest (the daemon's delta fill finds
    # a block it stored a moment ago too).
    seen, dup = set(), 0
    for k in sorted(ws):
        h = ent[k]
        if h == ZERO or h in avail:
            continue
        if h in seen:
            dup += blen(k)
        seen.add(h)
    with open(out, "w") as f:
        f.write("ws_bytes %d\nnonzero_bytes %d\nchanged_bytes %d\n"
                "dup_in_changed_bytes %d\nnowhere_bytes %d\nws_blocks %d\n"
                "nonzero_blocks %d\n"
                % (tot, nz, changed, dup, nowhere, len(ws),
                   sum(1 for k in ws if ent[k] != ZERO)))


def hashes(fn, bs=65536):
    out = []
    with open(fn, "rb") as f:
        while True:
            b = f.read(bs)
            if not b:
                break
            out.append(None if b.count(0) == len(b) else hashlib.sha256(b).digest())
    return out


def cmd_share(a, b):
    ha, hb = hashes(a), hashes(b)
    where = {}
    for i, h in enumerate(ha):
        if h is not None:
            where.setdefault(h, i)
    same = other = nowhere = zero = 0
    for i, h in enumerate(hb):
        if h is None:
            zero += 1
        elif i < len(ha) and ha[i] == h:
            same += 1
        elif h in where:
            other += 1
        else:
            nowhere += 1
    print("blocks %d zero %d same_offset %d other_offset %d nowhere %d"
          % (len(hb), zero, same, other, nowhere))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"pick": cmd_pick, "blocks": cmd_blocks, "stage": cmd_stage, "rewrite": cmd_rewrite,
          "trace": cmd_trace, "ideal": cmd_ideal, "share": cmd_share}.get(cmd)
    if fn is None:
        sys.exit(__doc__)
    fn(*args)


if __name__ == "__main__":
    main()
