#!/bin/bash
# fuzz/run.sh SECONDS: run every fuzz target for SECONDS each (FUZZING.md).
# With cargo-fuzz and a nightly toolchain: libFuzzer, 2 GiB RSS limit, 10 s per input;
# otherwise the stable random-mutation driver (src/bin/drive.rs), which has no coverage
# feedback. Corpora are seeded from the test programs and real system files.
set -e
cd "$(dirname "$0")"
SECS=${1:-600}
# The targets write each input to a file (the library reads files by path): on tmpfs that
# costs no disk.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
TARGETS="plan_exec plan_library ld_cache maps explain_maps"
mkdir -p corpus/plan_exec corpus/plan_library corpus/ld_cache corpus/maps corpus/explain_maps
# Seeds: the test programs, a few system programs and libraries, the real cache, real maps.
for f in ../testdata/build/hello64pie ../testdata/build/hello32 ../testdata/build/static64 \
         ../testdata/build/staticpie32 ../testdata/build/musl/hello_musl /usr/bin/true; do
  [ -f "$f" ] && cp -f "$f" corpus/plan_exec/ 2>/dev/null || true
done
for f in ../testdata/build/libbss.so ../testdata/build/libtls.so ../testdata/build/lib/libchain.so \
         /usr/lib/x86_64-linux-gnu/libdl.so.2; do
  [ -f "$f" ] && cp -f "$f" corpus/plan_library/ 2>/dev/null || true
done
cp -f /etc/ld.so.cache corpus/ld_cache/ 2>/dev/null || true
cat /proc/self/maps > corpus/maps/self.maps
../target/x86_64-unknown-linux-gnu/release/elfmap plan --no-aslr /usr/bin/ls > corpus/maps/ls.maps 2>/dev/null || true
cp -f corpus/maps/*.maps ../testdata/maps/* corpus/explain_maps/ 2>/dev/null || true
if command -v cargo-fuzz >/dev/null && rustup run nightly rustc --version >/dev/null 2>&1; then
  for t in $TARGETS; do
    echo "== $t ($SECS s, libFuzzer)"
    cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
      | grep -E "^(stat::|==|#[0-9]+ *DONE|INFO: Running|SUMMARY|Crash|.*ERROR)" || true
  done
else
  cargo build --release --no-default-features --features stable-driver --bin drive
  for t in $TARGETS; do
    echo "== $t ($SECS s, the stable driver)"
    timeout "$SECS" target/release/drive "$t" "corpus/$t" 100000000 || true
  done
fi
