#!/usr/bin/env python3
"""A synthetic qcow2 boot for test/t-readahead-ratio.sh.

  bootsim.py make IMAGE TRACE   write a qcow2 with qemu-img/qemu-io whose
                                guest regions were written in shuffled
                                order (so its host layout is not the guest
                                order) and an ordered trace of it (format
                                A of imgcache-trace v1): the qcow2 metadata
                                first, then guest data in guest order
  bootsim.py replay FILE TRACE ORIGIN
                                read every range of TRACE from FILE with
                                O_DIRECT (4K-aligned ranges; others
                                buffered) in order, compare each with
                                ORIGIN; print "bytes B reads R ws W" (W:
                                the trace's working set rounded to 64 KiB
                                blocks); exit 1 on a short read or a
                                mismatch (naming the first)

Deterministic (a fixed seed).  The regions look like a boot's files: most
read whole, some only in part, in reads of 4K to 256K, with a few lone
reads between them; a real recorded trace replaces this (see issue 14)."""
import json
import mmap
import os
import random
import struct
import subprocess
import sys

CLUSTER = 65536
GUEST_SIZE = 4 << 30
BS = 65536


def make(image, trace):
    rnd = random.Random(14)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                    "cluster_size=%d" % CLUSTER, image, str(GUEST_SIZE)],
                   check=True)
    # Regions at cluster-aligned guest offsets, apart from each other.
    regions = []
    slots = rnd.sample(range(GUEST_SIZE // (8 << 20)), 240)
    for s in slots:
        size = rnd.choice([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48]) * CLUSTER
        off = s * (8 << 20) + rnd.randrange(0, 64) * CLUSTER
        regions.append((off, size))
    order = regions[:]
    rnd.shuffle(order)
    cmds = []
    for i, (off, size) in enumerate(order):
        # 64K pieces of their own patterns: no block is all zeros, and
        # bytes in the wrong place would show.
        for p in range(0, size, 4 * CLUSTER):
            n = min(4 * CLUSTER, size - p)
            cmds += ["-c", "write -q -P %d %d %d" % (1 + (i * 7 + p // CLUSTER)
                                                     % 250, off + p, n)]
    for k in range(0, len(cmds), 400):
        subprocess.run(["qemu-io", "-f", "qcow2"] + cmds[k:k + 400] +
                       [image], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(["qemu-img", "map", "--output=json", "-f", "qcow2",
                          image], check=True, capture_output=True).stdout
    ext = [e for e in json.loads(out) if e.get("data") and "offset" in e]

    def host_pieces(goff, glen):
        """Host (offset, length) pieces of a guest range, in guest order."""
        res = []
        for e in ext:
            s, l = e["start"], e["length"]
            a, b = max(goff, s), min(goff + glen, s + l)
            if a < b:
                res.append((e["offset"] + a - s, b - a))
        return res

    reads = []
    with open(image, "rb") as f:
        hdr = f.read(104)
    l1_size, l1_off, rt_off, rt_clusters = struct.unpack(">I Q Q I",
                                                         hdr[36:60])
    # Metadata as QEMU reads it at open and on first use: the header
    # cluster, the refcount table, the L1 table, then each L2 table.
    reads.append((0, 4096))
    reads.append((rt_off, 4096))
    reads.append((l1_off, max(4096, (l1_size * 8 + 4095) // 4096 * 4096)))
    with open(image, "rb") as f:
        f.seek(l1_off)
        l1 = struct.unpack(">%dQ" % l1_size, f.read(l1_size * 8))
    for e in l1:
        p = e & 0x00fffffffffffe00
        if p:
            reads.append((p, CLUSTER))
    # The boot reads a fifth of what the image holds (a real one: 42 of
    # 646 MB), the other regions stay unread.
    booted = rnd.sample(regions, len(regions) // 5)
    for goff, size in sorted(booted):
        part = size if rnd.random() < 0.7 else \
            max(4096, int(size * rnd.uniform(0.2, 0.9)) // 4096 * 4096)
        pos = 0
        while pos < part:
            n = min(part - pos, rnd.choice([4, 8, 16, 32, 64, 128, 256]) << 10)
            for h, l in host_pieces(goff + pos, n):
                reads.append((h, l))
            pos += n
        if rnd.random() < 0.3:  # a lone read somewhere already written
            o, s = rnd.choice(booted)
            for h, l in host_pieces(o + rnd.randrange(0, s // 4096) * 4096,
                                    4096):
                reads.append((h, l))
    size = os.path.getsize(image)
    with open(trace, "w") as t:
        t.write("# imgcache-trace v1\n")
        t.write("# template boot.qcow2 size %d block %d (synthetic: "
                "test/bootsim.py)\n" % (size, BS))
        for i, (o, l) in enumerate(reads):
            t.write("%d %d %d\n" % (i * 100, o, l))


def replay(path, trace, origin):
    ranges = []
    with open(trace) as t:
        for line in t:
            if line.startswith("#"):
                continue
            _, o, l = line.split()
            ranges.append((int(o), int(l)))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    bfd = os.open(path, os.O_RDONLY)
    buf = mmap.mmap(-1, 16 << 20)
    blocks = set()
    total = 0
    with open(origin, "rb") as orig:
        for o, l in ranges:
            if o % 4096 == 0 and l % 4096 == 0:
                n = os.preadv(fd, [memoryview(buf)[:l]], o)
                got = buf[:n]
            else:
                got = os.pread(bfd, l, o)
            orig.seek(o)
            want = orig.read(l)
            if got != want:
                print("range %d+%d: %s" % (o, l, "short read" if
                      len(got) != len(want) else "bytes differ"))
                return 1
            total += len(got)
            blocks.update(range(o // BS, (o + l - 1) // BS + 1))
    print("bytes %d reads %d ws %d" % (total, len(ranges), len(blocks) * BS))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "replay":
        sys.exit(replay(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        sys.exit(__doc__)
