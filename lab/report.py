#!/usr/bin/env python3
"""Summarise the kernel lab's results (host side; reads DATA/results/*/index.tsv).

    python3 lab/report.py [DATA_DIR [ELFMAP]]

Prints, per kernel: the programs x stages x layouts (x address limits) recorded, and for
the x86_64 kernels how many `elfmap compare` runs were identical / different / errors,
whether the recorder and `elfmap run` saw the same maps, and the kinds of difference; then,
on this host, `elfmap kernel check` (every recorded case planned with `--kernel RELEASE`, the
built-in profile, and with `--kernel` the capture the guest made, over the guest's root as
`--root`) against the recorder's real maps.
Writes, per kernel, DATA/results/RELEASE/report/: different.txt (every differing compare,
with its diff lines), errors.txt, kinds.tsv (each differing compare and its kinds) and
summary.txt (what is printed here).
"""
import collections
import os
import re
import sys

DATA = sys.argv[1] if len(sys.argv) > 1 else "/work/lab-data"
ELFMAP = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "target", "x86_64-unknown-linux-gnu", "release", "elfmap")
RESULTS = os.path.join(DATA, "results")
STAGING = os.path.join(DATA, "root-staging")

MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$")


def parse(line):
    m = MAPS_RE.match(line)
    if not m:
        return None
    return {
        "start": int(m.group(1), 16),
        "end": int(m.group(2), 16),
        "perms": m.group(3),
        "off": int(m.group(4), 16),
        "inode": m.group(6),
        "path": m.group(7).strip(),
        "text": line,
    }


def read_compare(path):
    """The (predicted-only, real-only, made-by-initializers) lines of a compare output."""
    pred, real, init = [], [], []
    section = "diff"
    with open(path, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("made by initializers"):
                section = "init"
                continue
            if section == "init" and line.startswith("  + "):
                init.append(line[4:])
                continue
            if line.startswith("- "):
                pred.append(line[2:])
            elif line.startswith("+ "):
                real.append(line[2:])
    return pred, real, init


SPECIAL = ("[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]", "[stack]", "[heap]")


def kinds_of(pred, real, left="predicted", right="real"):
    """Name the kinds of difference between the predicted-only and real-only lines."""
    P = [p for p in (parse(x) for x in pred) if p]
    R = [r for r in (parse(x) for x in real) if r]
    kinds = set()

    def names(lines):
        return collections.Counter(l["path"] for l in lines)

    pn, rn = names(P), names(R)
    # [vsyscall]
    if pn["[vsyscall]"] != rn["[vsyscall]"]:
        kinds.add("[vsyscall]: %s %s, %s %s" % (
            left, "present" if pn["[vsyscall]"] else "absent", right, "present" if rn["[vsyscall]"] else "absent"))
    # vvar / vvar_vclock / vdso
    if pn["[vvar_vclock]"] != rn["[vvar_vclock]"]:
        kinds.add("[vvar_vclock] line (%s %d, %s %d)" % (left, pn["[vvar_vclock]"], right, rn["[vvar_vclock]"]))
    for name in ("[vvar]", "[vdso]"):
        p = [l for l in P if l["path"] == name]
        r = [l for l in R if l["path"] == name]
        if p and r:
            if (p[0]["end"] - p[0]["start"]) != (r[0]["end"] - r[0]["start"]):
                kinds.add("%s size" % name)
            if p[0]["start"] != r[0]["start"]:
                kinds.add("%s position" % name)
        elif p or r:
            kinds.add("%s line only %s" % (name, left if p else right))
    # [stack]
    if pn["[stack]"] or rn["[stack]"]:
        kinds.add("[stack]")
    # the bss tail: the same range, named [heap] on one side only
    prange = {(l["start"], l["end"], l["perms"]): l for l in P}
    rrange = {(l["start"], l["end"], l["perms"]): l for l in R}
    paired = set()
    for k, l in prange.items():
        if k in rrange:
            a, b = l["path"], rrange[k]["path"]
            if a != b and "[heap]" in (a, b) and "" in (a, b):
                kinds.add("anonymous line named [heap] only %s (bss tail / brk)" % ("in " + (right if b == "[heap]" else left)))
                paired.add(k)
            elif a != b and a.startswith("/") and b.startswith("/"):
                # another file at this range: placement, counted with the files below
                pass
            elif a != b:
                kinds.add("same range, other name (%s vs %s)" % (a or "anon", b or "anon"))
                paired.add(k)
            elif l["text"] != rrange[k]["text"]:
                kinds.add("same range, other offset/device/inode")
                paired.add(k)
    rest_p = [l for k, l in prange.items() if k not in paired and l["path"] not in SPECIAL]
    rest_r = [l for k, l in rrange.items() if k not in paired and l["path"] not in SPECIAL]
    # [heap] lines not paired
    hp = [l for k, l in prange.items() if k not in paired and l["path"] == "[heap]"]
    hr = [l for k, l in rrange.items() if k not in paired and l["path"] == "[heap]"]
    if hp or hr:
        kinds.add("[heap] line differs")
    # file-backed lines: the same file at another address (placement) or other splits
    fp = collections.defaultdict(list)
    fr = collections.defaultdict(list)
    for l in rest_p:
        if l["path"].startswith("/"):
            fp[l["path"]].append(l)
    for l in rest_r:
        if l["path"].startswith("/"):
            fr[l["path"]].append(l)
    for path in set(fp) | set(fr):
        a, b = fp.get(path, []), fr.get(path, [])
        if a and b:
            if min(x["start"] for x in a) != min(x["start"] for x in b):
                delta = min(x["start"] for x in b) - min(x["start"] for x in a)
                kinds.add("file mapped at another address (%s)" % classify_file(path))
            else:
                kinds.add("file mapped with other lines/splits (%s)" % classify_file(path))
        else:
            kinds.add("file line only %s (%s)" % (left if a else right, classify_file(path)))
    ap = [l for l in rest_p if not l["path"]]
    ar = [l for l in rest_r if not l["path"]]
    if ap or ar:
        kinds.add("anonymous lines differ")
    if not kinds and (P or R):
        kinds.add("other")
    return sorted(kinds)


def classify_file(path):
    if "ld-linux" in path or "ld-musl" in path or path.endswith("/libc.so") and "musl" in path:
        return "the loader"
    if path == "/etc/ld.so.cache":
        return "ld.so.cache"
    if ".so" in os.path.basename(path):
        return "a library"
    return "the program"


def load_index(path):
    rows = []
    with open(path, errors="replace") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            vals = line.rstrip("\n").split("\t")
            vals += [""] * (len(header) - len(vals))
            rows.append(dict(zip(header, vals)))
    return rows


def read1(path, default="?"):
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError:
        return default


def kernel_report(rel, out):
    d = os.path.join(RESULTS, rel)
    idx = os.path.join(d, "index.tsv")
    if not os.path.exists(idx):
        out.append("%s: no index.tsv (the guest did not finish: see %s/console.log)" % (rel, d))
        return None
    rows = load_index(idx)
    uname_r = read1(os.path.join(d, "sysinfo", "uname-r"))
    machine = "?"
    for line in read1(os.path.join(d, "sysinfo", "uname"), "").splitlines():
        if line.startswith("machine\t"):
            machine = line.split("\t", 1)[1]
    secs = read1(os.path.join(d, "seconds"))
    progs = sorted({r["program"] for r in rows})
    by_bits = collections.Counter(r["bits"] for r in rows if r["tool"] == "recorder" and r["stage"] == "exec" and r["layout"] == "flexible" and r["limit"] == "std")
    rec = [r for r in rows if r["tool"] == "recorder"]
    rec_ok = sum(1 for r in rec if r["status"] == "ok")
    is_host = os.path.exists(os.path.join(d, "host"))
    out.append("== %s (uname -r: %s, %s; %s %s s)" % (rel, uname_r, machine, "this host, natively:" if is_host else "guest", secs))
    out.append("   programs: %d (%d 64-bit, %d 32-bit); program x stage x layout (x 3gb for 32-bit) cases: %d, recorded %d, recorder errors %d"
               % (len(progs), by_bits.get("64", 0), by_bits.get("32", 0), len(rec), rec_ok, len(rec) - rec_ok))
    errs = [r for r in rec if r["status"] != "ok"]
    for r in errs[:8]:
        out.append("     recorder error: %s %s %s %s: %s" % (r["program"], r["stage"], r["layout"], r["limit"], r["detail"]))
    if len(errs) > 8:
        out.append("     ... %d more recorder errors (report/errors.txt)" % (len(errs) - 8))
    rep = os.path.join(d, "report")
    os.makedirs(rep, exist_ok=True)
    summary = {"release": uname_r, "machine": machine, "cases": len(rec), "recorded": rec_ok}
    cmp_rows = [r for r in rows if r["tool"] == "compare"]
    err_lines = ["recorder\t%s\t%s\t%s\t%s\t%s" % (r["program"], r["stage"], r["layout"], r["limit"], r["detail"]) for r in errs]
    if cmp_rows:
        c = collections.Counter(r["status"] for r in cmp_rows)
        out.append("   elfmap compare: %d runs: identical %d, different %d, errors %d"
                   % (len(cmp_rows), c["identical"], c["different"], c["error"]))
        for stage in ("exec", "loaded", "entry"):
            cs = collections.Counter(r["status"] for r in cmp_rows if r["stage"] == stage)
            out.append("     %-6s identical %4d  different %4d  errors %3d" % (stage, cs["identical"], cs["different"], cs["error"]))
        for bits in ("64", "32"):
            cs = collections.Counter(r["status"] for r in cmp_rows if r["bits"] == bits)
            if cs:
                out.append("     %s-bit  identical %4d  different %4d  errors %3d" % (bits, cs["identical"], cs["different"], cs["error"]))
        summary.update(identical=c["identical"], different=c["different"], errors=c["error"])
        # recorder vs elfmap run: the same maps?
        same = differ = 0
        mism = []
        for r in rows:
            if r["tool"] != "elfmap-run" or r["status"] != "ok":
                continue
            a = os.path.join(d, r["file"])
            b = os.path.join(d, r["file"].replace("elfmap-run/", "recorder/", 1))
            try:
                if open(a, "rb").read() == open(b, "rb").read():
                    same += 1
                else:
                    differ += 1
                    mism.append(r["file"])
            except OSError:
                differ += 1
                mism.append(r["file"])
        out.append("   recorder vs elfmap run (same stop, separate processes): %d identical, %d different" % (same, differ))
        for m in mism[:5]:
            out.append("     differs: %s" % m)
        # kinds of difference
        kinds = collections.Counter()
        example = {}
        kind_lines = []
        diff_out = []
        for r in cmp_rows:
            f = os.path.join(d, r["file"])
            if r["status"] == "different":
                pred, real, _ = read_compare(f)
                ks = kinds_of(pred, real)
                for k in ks:
                    kinds[k] += 1
                    if k not in example or len(pred) + len(real) < len(example[k][1]) + len(example[k][2]):
                        example[k] = (r, pred, real)
                kind_lines.append("\t".join([r["program"], r["stage"], r["layout"], r["limit"], "; ".join(ks)]))
                diff_out.append("### %s --stage %s --layout %s%s  (%s)" % (r["program"], r["stage"], r["layout"], " --3gb" if r["limit"] == "3gb" else "", r["file"]))
                diff_out += ["- " + x for x in pred] + ["+ " + x for x in real] + [""]
            elif r["status"] == "error":
                err_lines.append("compare\t%s\t%s\t%s\t%s\t%s" % (r["program"], r["stage"], r["layout"], r["limit"], r["detail"]))
        with open(os.path.join(rep, "different.txt"), "w") as f:
            f.write("\n".join(diff_out) + "\n")
        with open(os.path.join(rep, "kinds.tsv"), "w") as f:
            f.write("program\tstage\tlayout\tlimit\tkinds\n" + "\n".join(kind_lines) + "\n")
        cerrs = [r for r in cmp_rows if r["status"] == "error"]
        if cerrs:
            why = collections.Counter(re.sub(r"^elfmap: [^:]*: ", "", r["detail"])[:150] for r in cerrs)
            out.append("   compare errors by reason:")
            for w, n in why.most_common(6):
                out.append("     %4d  %s" % (n, w))
        out.append("   kinds of difference (differing compare runs showing each):")
        for k, n in kinds.most_common():
            out.append("     %4d  %s" % (n, k))
        with open(os.path.join(rep, "examples.txt"), "w") as f:
            for k, n in kinds.most_common():
                r, pred, real = example[k]
                f.write("### %s (%d runs); e.g. %s --stage %s --layout %s%s\n" % (k, n, r["program"], r["stage"], r["layout"], " --3gb" if r["limit"] == "3gb" else ""))
                f.write("\n".join(["- " + x for x in pred] + ["+ " + x for x in real]) + "\n\n")
        out.append("   diffs: %s/{different.txt,kinds.tsv,examples.txt,errors.txt}" % rep)
    else:
        out.append("   (no elfmap on this kernel: the recorder's maps are the ground truth; compare them on the host)")
    aslr_rows = [r for r in rows if r["tool"] == "compare-aslr"]
    if aslr_rows:
        # compare with ASLR on (flexible layout): the draws recovered from the real process,
        # each one this kernel can make, and the plan with them equal to it.
        c2 = collections.Counter(r["status"] for r in aslr_rows)
        out.append("   elfmap compare with ASLR on: %d runs: consistent %d, inconsistent %d, errors %d"
                   % (len(aslr_rows), c2["identical"], c2["different"], c2["error"]))
        for r in [r for r in aslr_rows if r["status"] != "identical"][:5]:
            out.append("     %s: %s --stage %s: %s" % (r["status"], r["program"], r["stage"], r["detail"][:200]))
        summary["aslr"] = "%d/%d" % (c2["identical"], len(aslr_rows))
    with open(os.path.join(rep, "errors.txt"), "w") as f:
        f.write("\n".join(err_lines) + ("\n" if err_lines else ""))
    return summary


def normalise(text):
    """Maps text without what a copy of the same files cannot share: device and inode
    numbers, and the padding (narrower on a 32-bit kernel)."""
    out = []
    for line in text.splitlines():
        p = parse(line)
        if not p:
            out.append(line)
            continue
        w = 8 if p["end"] <= 0x100000000 else 12
        out.append("%0*x-%0*x %s %08x 00:00 0 %s" % (w, p["start"], w, p["end"], p["perms"], p["off"], p["path"]))
    return out


def versus_host(rel, host_rel, out):
    """Each guest recorder file against the host's file of the same name (real vs real)."""
    import difflib
    d = os.path.join(RESULTS, rel)
    h = os.path.join(RESULTS, host_rel)
    rows = [r for r in load_index(os.path.join(d, "index.tsv")) if r["tool"] == "recorder" and r["status"] == "ok"]
    c = collections.Counter()
    kinds = collections.Counter()
    example = {}
    lines = []
    diffs = []
    for r in rows:
        hf = os.path.join(h, r["file"])
        if not os.path.exists(hf):
            c["no host file"] += 1
            continue
        a = normalise(read1(hf, ""))
        b = normalise(read1(os.path.join(d, r["file"]), ""))
        if a == b:
            c["identical"] += 1
            continue
        c["different"] += 1
        pred, real = [], []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if tag != "equal":
                pred += a[i1:i2]
                real += b[j1:j2]
        ks = kinds_of(pred, real, "host", "here")
        for k in ks:
            kinds[k] += 1
            if k not in example or len(pred) + len(real) < len(example[k][1]) + len(example[k][2]):
                example[k] = (r, pred, real)
        lines.append("\t".join([r["program"], r["stage"], r["layout"], r["limit"], "; ".join(ks)]))
        diffs.append("### %s --stage %s --layout %s%s  (%s)" % (r["program"], r["stage"], r["layout"], " --3gb" if r["limit"] == "3gb" else "", r["file"]))
        diffs += ["- " + x for x in pred] + ["+ " + x for x in real] + [""]
    rep = os.path.join(d, "report")
    os.makedirs(rep, exist_ok=True)
    out.append("   real maps here vs real maps on the host (%s), dev/inode and padding ignored: identical %d, different %d%s"
               % (host_rel, c["identical"], c["different"], (", no host file %d" % c["no host file"]) if c["no host file"] else ""))
    for k, n in kinds.most_common():
        out.append("     %4d  %s" % (n, k))
    with open(os.path.join(rep, "vs-host-different.txt"), "w") as f:
        f.write("\n".join(diffs) + "\n")
    with open(os.path.join(rep, "vs-host-kinds.tsv"), "w") as f:
        f.write("program\tstage\tlayout\tlimit\tkinds\n" + "\n".join(lines) + "\n")
    with open(os.path.join(rep, "vs-host-examples.txt"), "w") as f:
        for k, n in kinds.most_common():
            r, pred, real = example[k]
            f.write("### %s (%d runs); e.g. %s --stage %s --layout %s%s  (- host %s, + %s)\n" % (
                k, n, r["program"], r["stage"], r["layout"], " --3gb" if r["limit"] == "3gb" else "", host_rel, rel))
            f.write("\n".join(["- " + x for x in pred] + ["+ " + x for x in real]) + "\n\n")
    out.append("   diffs: %s/vs-host-{different.txt,kinds.tsv,examples.txt} (- host, + this kernel)" % rep)
    return c


def host_plans(rel, out, kernel=None, label="built-in"):
    """`elfmap kernel check` of the results of `rel` on this host: each recorded case planned
    for that kernel (`kernel`: a release or a capture file; default the recorded release)
    with the guest's root, against the recorder's maps. Returns (identical, cases)."""
    import json
    import subprocess
    d = os.path.join(RESULTS, rel)
    rep = os.path.join(d, "report")
    os.makedirs(rep, exist_ok=True)
    tag = "capture" if kernel else "builtin"
    cmd = [ELFMAP, "kernel", "check", "--json", "--root", STAGING,
           "--diffs", os.path.join(rep, "host-plan-%s-diffs.txt" % tag)]
    if kernel:
        cmd += ["--kernel", kernel]
    cmd.append(d)
    p = subprocess.run(cmd, capture_output=True, text=True)
    try:
        j = json.loads(p.stdout)
    except ValueError:
        out.append("   plan on this host (%s): elfmap kernel check failed: %s" % (label, p.stderr.strip()[:300]))
        return None
    cases = j["cases"]
    same = [c for c in cases if c["verdict"] in ("identical", "identical_but_initializers")]
    out.append("   plan on this host (%s: %s) vs the real maps: identical %d of %d%s"
               % (label, j["kernel"], len(same), len(cases),
                  "" if len(same) == len(cases) else " (diffs: %s/host-plan-%s-diffs.txt)" % (rep, tag)))
    for stage in ("exec", "loaded", "entry"):
        cs = [c for c in cases if c["case"]["stage"] == stage]
        if cs:
            ok = sum(1 for c in cs if c in same)
            out.append("     %-6s %4d of %4d" % (stage, ok, len(cs)))
    cs = [c for c in cases if c["case"].get("aslr")]
    if cs:
        ok = sum(1 for c in cs if c in same)
        out.append("     ASLR on: %4d of %4d (the draws recovered from each sample)" % (ok, len(cs)))
    for c in [c for c in cases if c not in same][:5]:
        out.append("     %s: %s %s: %s" % (c["verdict"], c["case"]["program"], c["case"]["file"],
                                          (c["detail"] or [""])[0]))
    if p.stderr.strip():
        out.append("     stderr: %s" % p.stderr.strip()[:300])
    return len(same), len(cases)


def main():
    if not os.path.isdir(RESULTS):
        print("no results in %s: run `make -C lab kernels` first" % RESULTS)
        return 1
    rels = sorted(x for x in os.listdir(RESULTS)
                  if not x.startswith(".") and os.path.isdir(os.path.join(RESULTS, x)))
    order = []
    tsv = os.path.join(DATA, "kernels.tsv")
    if os.path.exists(tsv):
        order = [l.split("\t")[0] for l in open(tsv) if l.strip()]
    rels = [r for r in order if r in rels] + [r for r in rels if r not in order]
    out = []
    summaries = []
    hosts = [r for r in rels if os.path.exists(os.path.join(RESULTS, r, "host"))]
    for rel in rels:
        s = kernel_report(rel, out)
        if s:
            if hosts and rel not in hosts:
                vh = versus_host(rel, hosts[0], out)
                s["vs_host"] = "%d/%d" % (vh["identical"], vh["identical"] + vh["different"])
            if os.path.exists(ELFMAP):
                hp = host_plans(rel, out)
                if hp:
                    s["host_plan"] = "%d/%d" % hp
                cap = os.path.join(RESULTS, rel, "sysinfo", "kernel-capture.json")
                if os.path.exists(cap) and os.path.getsize(cap) > 0:
                    hc = host_plans(rel, out, cap, "the guest's capture")
                    if hc:
                        s["host_capture"] = "%d/%d" % hc
            summaries.append(s)
        out.append("")
    out.append("kernel\tmachine\tcases\trecorded\tcompare: identical\tdifferent\terrors\treal maps equal to the host's"
               "\tplan --kernel RELEASE here = real\tplan --kernel CAPTURE here = real\tcompare with ASLR on: consistent")
    for s in summaries:
        out.append("%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s" % (
            s["release"], s["machine"], s["cases"], s["recorded"],
            s.get("identical", "-"), s.get("different", "-"), s.get("errors", "-"),
            s.get("vs_host", "-"), s.get("host_plan", "-"), s.get("host_capture", "-"),
            s.get("aslr", "-")))
    text = "\n".join(out)
    print(text)
    with open(os.path.join(RESULTS, "summary.txt"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
