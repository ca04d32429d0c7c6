#!/bin/bash
# Benchmark: elfmap's whole plan as a process vs tools that only list dependencies
# (ld.so --list, ldd, libtree), on the same programs, hot cache. Prints mean times and ratios.
# Uses hyperfine (Debian package); `make bench` installs it and libtree.
set -eu
cd "$(dirname "$0")/.."
ELFMAP=${ELFMAP:-target/x86_64-unknown-linux-gnu/release/elfmap}
STAGE=${STAGE:-loaded}
PROGRAMS=${PROGRAMS:-/usr/bin/gdb /usr/bin/curl /usr/bin/ls /usr/bin/bash}
LDSO=/lib64/ld-linux-x86-64.so.2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

mean() { # hyperfine JSON -> mean seconds
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$1"
}

printf '%-16s %12s %12s %12s %12s   %s\n' program elfmap "ld.so --list" ldd libtree "ratios (tool / elfmap)"
for p in $PROGRAMS; do
  [ -x "$p" ] || continue
  n=$(basename "$p")
  # elfmap must succeed at this stage, or the number means nothing.
  "$ELFMAP" plan --no-aslr --stage "$STAGE" "$p" >/dev/null
  hyperfine -N -w 20 -m 200 --export-json "$out/e.json" "$ELFMAP plan --no-aslr --stage $STAGE $p" >/dev/null 2>&1
  hyperfine -N -w 20 -m 200 --export-json "$out/l.json" "$LDSO --list $p" >/dev/null 2>&1
  hyperfine -w 5 -m 50 --export-json "$out/d.json" "ldd $p" >/dev/null 2>&1
  if command -v libtree >/dev/null; then
    hyperfine -N -w 20 -m 200 --export-json "$out/t.json" "libtree $p" >/dev/null 2>&1; t=$(mean "$out/t.json")
  else t=nan; fi
  e=$(mean "$out/e.json"); l=$(mean "$out/l.json"); d=$(mean "$out/d.json")
  python3 - "$n" "$e" "$l" "$d" "$t" <<'PY'
import sys, math
n, e, l, d, t = sys.argv[1], *map(float, sys.argv[2:])
ms = lambda x: "n/a" if math.isnan(x) else f"{x*1000:.2f} ms"
r = lambda x: "n/a" if math.isnan(x) else f"{x/e:.1f}x"
print(f"{n:<16} {ms(e):>12} {ms(l):>12} {ms(d):>12} {ms(t):>12}   ld.so {r(l)}, ldd {r(d)}, libtree {r(t)}")
PY
done
