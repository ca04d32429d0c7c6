#!/bin/bash
# Benchmark: elfmap's whole plan (and its dependency tree alone, `elfmap deps`) as a process
# vs tools that only list dependencies (ld.so --list, ldd, libtree), on the same programs,
# hot cache. Prints mean times and ratios.
# Uses hyperfine (Debian package); `make bench` installs it and libtree.
set -eu
cd "$(dirname "$0")/.."
ELFMAP=${ELFMAP:-target/x86_64-unknown-linux-gnu/release/elfmap}
STAGE=${STAGE:-loaded}
PROGRAMS=${PROGRAMS:-/usr/bin/gdb /usr/bin/curl /usr/bin/ls /usr/bin/bash}
LDSO=/lib64/ld-linux-x86-64.so.2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mean() { # hyperfine JSON -> "mean,min" seconds (the machine is a VM: the min shows the
  # cost without the noise of other guests)
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r["mean"], r["min"], sep=",")' "$1"
}

# What any process costs here: elfmap starting and exiting without planning.
hyperfine -N -w 20 -m 200 --export-json "$out/v.json" "$ELFMAP --version" >/dev/null 2>&1
python3 - "$(mean "$out/v.json")" <<'PY'
import sys
m, lo = map(float, sys.argv[1].split(","))
print(f"process start and exit alone (elfmap --version): {m*1000:.2f} ms (min {lo*1000:.2f} ms)")
PY

# The input floor (bench/floor.c): only the system calls any plan must make for each object
# (open, fstat, header, dynamic section and its strings, one readlink, close). With no
# arguments it is a static C process that does nothing.
cc -O2 -static -o "$out/floor" bench/floor.c
hyperfine -N -w 20 -m 200 --export-json "$out/f0.json" "$out/floor" >/dev/null 2>&1
python3 - "$(mean "$out/f0.json")" <<'PY'
import sys
m, lo = map(float, sys.argv[1].split(","))
print(f"a static C process that does nothing (bench/floor.c): {m*1000:.2f} ms (min {lo*1000:.2f} ms)")
PY

printf '%-16s %16s %16s %16s %16s %16s %16s   %s\n' program "elfmap plan" "elfmap deps" "input floor" "ld.so --list" ldd libtree "ratios of means (tool / elfmap plan)"
echo "(mean ms, min in parentheses)"
for p in $PROGRAMS; do
  [ -x "$p" ] || continue
  n=$(basename "$p")
  # elfmap must succeed at this stage, or the number means nothing.
  "$ELFMAP" plan --no-aslr --stage "$STAGE" "$p" >/dev/null
  hyperfine -N -w 20 -m 200 --export-json "$out/e.json" "$ELFMAP plan --no-aslr --stage $STAGE $p" >/dev/null 2>&1
  hyperfine -N -w 20 -m 200 --export-json "$out/p.json" "$ELFMAP deps $p" >/dev/null 2>&1
  objs=$("$ELFMAP" deps --json "$p" | python3 -c 'import json,sys; print(" ".join(o["path"] for o in json.load(sys.stdin)["objects"] if o.get("path")))')
  "$out/floor" $objs
  hyperfine -N -w 20 -m 200 --export-json "$out/f.json" "$out/floor $objs" >/dev/null 2>&1
  hyperfine -N -w 20 -m 200 --export-json "$out/l.json" "$LDSO --list $p" >/dev/null 2>&1
  hyperfine -w 5 -m 50 --export-json "$out/d.json" "ldd $p" >/dev/null 2>&1
  if command -v libtree >/dev/null; then
    hyperfine -N -w 20 -m 200 --export-json "$out/t.json" "libtree $p" >/dev/null 2>&1; t=$(mean "$out/t.json")
  else t=nan,nan; fi
  e=$(mean "$out/e.json"); p=$(mean "$out/p.json"); f=$(mean "$out/f.json"); l=$(mean "$out/l.json"); d=$(mean "$out/d.json")
  python3 - "$n" "$e" "$p" "$f" "$l" "$d" "$t" <<'PY'
import sys, math
n = sys.argv[1]
(e, emin), (p, pmin), (f, fmin), (l, lmin), (d, dmin), (t, tmin) = [tuple(map(float, a.split(","))) for a in sys.argv[2:]]
ms = lambda x, lo: "n/a" if math.isnan(x) else f"{x*1000:.2f} ({lo*1000:.2f})"
r = lambda x: "n/a" if math.isnan(x) else f"{x/e:.1f}x"
print(f"{n:<16} {ms(e, emin):>16} {ms(p, pmin):>16} {ms(f, fmin):>16} {ms(l, lmin):>16} {ms(d, dmin):>16} {ms(t, tmin):>16}   ld.so {r(l)}, ldd {r(d)}, libtree {r(t)}")
PY
done
