#!/usr/bin/env python3
"""Copy a few dozen of the lab's recorded maps per kernel into the repository
(testdata/kernels/RELEASE/), so that `make test` checks the kernel profiles against real
kernels without qemu (tests/kernels.rs).

    python3 lab/export.py DATA_DIR OUT_DIR

For each kernel of DATA/results (not the host's), the cases of the chosen programs are
copied as the recorder wrote them: index.tsv (those rows), recorder/KEY.*.maps and .info
(ASLR off) and recorder-aslr/ (ASLR on, the flexible layout: one random sample per stop),
sysinfo/uname, kernel-capture.json (what `elfmap kernel capture` wrote in the guest);
TESTDATA names where the guest had the test programs. MANIFEST lists what the plans of those cases read, as the guest's root
(DATA/root-staging) held it: `sha256 PATH` of every ELF file named in the maps (and of the
programs), and `pages N /etc/ld.so.cache` (the cache's mapped size); a test plans only the
cases whose files are the same here.
"""
import hashlib
import os
import re
import shutil
import sys

DATA = sys.argv[1] if len(sys.argv) > 1 else "/work/lab-data"
OUT = sys.argv[2] if len(sys.argv) > 2 else "testdata/kernels"
RESULTS = os.path.join(DATA, "results")
STAGING = os.path.join(DATA, "root-staging")

# The programs (test programs by their path under testdata/build), and the cases of each:
# 64-bit: exec, loaded, entry flexible + loaded legacy; 32-bit: the same and loaded --3gb.
TEST_64 = ("hello64pie", "static64", "staticpie64", "bigbss64", "align2mstaticpie64",
           "bigrostaticpie64", "main_all", "musl/main_musl", "hello_musl_static")
SYSTEM_64 = ("/usr/bin/ls", "/usr/bin/bash", "/usr/bin/openssl", "/usr/bin/curl")
TEST_32 = ("hello32", "hello32pie", "static32", "bigbss32", "m32/main_all32")
CASES_64 = [("exec", "flexible", "std"), ("loaded", "flexible", "std"),
            ("entry", "flexible", "std"), ("loaded", "legacy", "std")]
CASES_32 = CASES_64 + [("loaded", "flexible", "3gb")]

MAPS_RE = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ [0-9a-f]+ \S+ \d+\s*(.*)$")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export(rel):
    src = os.path.join(RESULTS, rel)
    dst = os.path.join(OUT, rel)
    rows = []
    with open(os.path.join(src, "index.tsv")) as f:
        header = f.readline()
        for line in f:
            v = line.rstrip("\n").split("\t")
            rows.append((v, line))
    # Where the guest had the test programs (lab/mkroot.sh: their path on the host that
    # made the image), written to TESTDATA for the test to find them here.
    testdata = next((v[0][:v[0].index("/testdata/build/") + len("/testdata/build")]
                     for v, _ in rows if "/testdata/build/" in v[0]), "/testdata/build")
    want = {(testdata + "/" + p, *c) for p in TEST_64 for c in CASES_64}
    want |= {(p, *c) for p in SYSTEM_64 for c in CASES_64}
    want |= {(testdata + "/" + p, *c) for p in TEST_32 for c in CASES_32}
    keep = [(v, line) for v, line in rows
            if v[5] in ("recorder", "recorder-aslr") and v[6] == "ok"
            and (v[0], v[2], v[3], v[4]) in want]
    if not keep:
        return 0
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(os.path.join(dst, "recorder"))
    os.makedirs(os.path.join(dst, "recorder-aslr"))
    os.makedirs(os.path.join(dst, "sysinfo"))
    shutil.copy(os.path.join(src, "sysinfo", "uname"), os.path.join(dst, "sysinfo", "uname"))
    with open(os.path.join(dst, "TESTDATA"), "w") as f:
        f.write(testdata + "\n")
    # The guest's own capture of its kernel (x86_64 guests), for `--kernel FILE`.
    cap = os.path.join(src, "sysinfo", "kernel-capture.json")
    if os.path.exists(cap) and os.path.getsize(cap) > 0:
        shutil.copy(cap, os.path.join(dst, "kernel-capture.json"))
    needs = {}
    with open(os.path.join(dst, "index.tsv"), "w") as out:
        out.write(header)
        for v, line in keep:
            out.write(line)
            m = os.path.join(src, v[8])
            shutil.copy(m, os.path.join(dst, v[8]))
            info = m[:-len(".maps")] + ".info"
            if os.path.exists(info):
                shutil.copy(info, os.path.join(dst, v[8][:-len(".maps")] + ".info"))
            n = needs.setdefault(v[0], {v[0]})
            for l in open(m):
                mm = MAPS_RE.match(l.rstrip("\n"))
                if mm and mm.group(1).startswith("/"):
                    n.add(mm.group(1))
    files = sorted(set().union(*needs.values()))
    with open(os.path.join(dst, "MANIFEST"), "w") as out:
        out.write("# what the plans of these cases read, as the guest's root held it\n")
        for p in files:
            host = STAGING + p
            if os.path.islink(host):
                raise SystemExit("%s is a symbolic link in the root: export its target" % p)
            if p == "/etc/ld.so.cache":
                out.write("pages %d %s\n" % ((os.path.getsize(host) + 4095) // 4096, p))
            else:
                out.write("sha256 %s %s\n" % (sha256(host), p))
        for prog in sorted(needs):
            for p in sorted(needs[prog]):
                out.write("needs %s %s\n" % (prog, p))
    return len(keep)


def main():
    for rel in sorted(os.listdir(RESULTS)):
        d = os.path.join(RESULTS, rel)
        if not os.path.isdir(d) or os.path.exists(os.path.join(d, "host")):
            continue
        n = export(rel)
        print("%s: %d cases" % (rel, n))


if __name__ == "__main__":
    main()
