# elfmap: two commands do all set-up on a fresh machine (see README.md):
#   make demo   build, then predict and observe a 32-bit program at 0x08048000 and a 64-bit PIE
#   make test   install what the tests need, build the test programs, run every test
#   make kernels  the kernel lab (qemu): real maps of Debian's kernels against plan --kernel

CARGO   ?= cargo
# .cargo/config.toml names the target (for a static elfmap), so binaries go under it.
ELFMAP  := target/x86_64-unknown-linux-gnu/release/elfmap
# Debian packages the tests need: 32-bit toolchain and loader, musl (the test programs);
# chromium (tests/svg.rs opens the SVG picture in a headless browser).
APT_PKGS := gcc-multilib libc6-i386 musl-tools chromium

.PHONY: all deps build testdata test demo bench clean fuzz differential kernels

all: build

# Install the packages that are missing (we are root on the development machines and CI).
deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

build:
	$(CARGO) build --release

testdata: deps
	$(MAKE) -C testdata -j2

# The tests' elfmap remembers unique-symbol tables in a cache of its own, emptied first: the
# first plan of a program computes them, later ones take them (both are checked).
test: deps testdata
	rm -rf target/test-cache
	XDG_CACHE_HOME=$(CURDIR)/target/test-cache $(CARGO) test --profile test-release -- --test-threads=2

demo: deps testdata build
	@echo; echo "== a 32-bit non-PIE program, the classic i386 picture (setarch --3gb -R): text at 0x08048000"
	@echo "\$$ elfmap plan --no-aslr --3gb --stage exec --format table testdata/build/hello32"
	@$(ELFMAP) plan --no-aslr --3gb --stage exec --format table testdata/build/hello32
	@echo; echo "\$$ elfmap compare --no-aslr --3gb --stage exec --side-by-side testdata/build/hello32"
	@$(ELFMAP) compare --no-aslr --3gb --stage exec --side-by-side testdata/build/hello32
	@echo; echo "== a 64-bit PIE at ELF_ET_DYN_BASE, ld.so just below mmap_base"
	@echo "\$$ elfmap compare --no-aslr --stage exec --side-by-side testdata/build/hello64pie"
	@$(ELFMAP) compare --no-aslr --stage exec --side-by-side testdata/build/hello64pie
	@echo; echo "== /bin/ls after the dynamic loader: every library, RELRO, ld.so's own memory (line diff)"
	@echo "\$$ elfmap compare --no-aslr --stage loaded /bin/ls"
	@$(ELFMAP) compare --no-aslr --stage loaded /bin/ls
	@echo; echo "== why each line is there: hello32's sections, and where main, printf and a string land"
	@echo "\$$ elfmap explain --no-aslr --3gb --symbol main --symbol printf --string hi testdata/build/hello32"
	@$(ELFMAP) explain --no-aslr --3gb --symbol main --symbol printf --string hi testdata/build/hello32
	@echo "\$$ elfmap explain --no-aslr --3gb --svg hello32.svg testdata/build/hello32   (the picture: open hello32.svg)"
	@$(ELFMAP) explain --no-aslr --3gb --svg hello32.svg testdata/build/hello32 > /dev/null
	@echo; echo "== ASLR on: the kernel's draws recovered from a real run of ls, and checked"
	@echo "\$$ elfmap compare --stage loaded /bin/ls | head -8; ... | tail -1"
	@$(ELFMAP) compare --stage loaded /bin/ls > .demo-aslr.txt; head -8 .demo-aslr.txt; tail -1 .demo-aslr.txt; rm -f .demo-aslr.txt
	@echo; echo "\$$ elfmap entropy --measure 300 /bin/ls"
	@$(ELFMAP) entropy --measure 300 /bin/ls
	@echo; echo "== the same program on Debian 12's native 32-bit kernel (686-pae): 3G/1G, the vDSO below ld.so"
	@echo "\$$ elfmap plan --kernel 6.1.0-50-686-pae --no-aslr --stage exec --format table testdata/build/hello32"
	@$(ELFMAP) plan --kernel 6.1.0-50-686-pae --no-aslr --stage exec --format table testdata/build/hello32
	@echo; echo "== a real ASLR sample of ls recorded on Debian 11's kernel (5.10, under qemu), checked here"
	@echo "\$$ elfmap compare --kernel 5.10.0-32-amd64 --stage exec --maps testdata/kernels/5.10.0-32-amd64/recorder-aslr/usr%bin%ls.exec.flexible.std.maps /usr/bin/ls"
	@$(ELFMAP) compare --kernel 5.10.0-32-amd64 --stage exec --maps 'testdata/kernels/5.10.0-32-amd64/recorder-aslr/usr%bin%ls.exec.flexible.std.maps' /usr/bin/ls > .demo-kernel.txt || true; head -7 .demo-kernel.txt; tail -1 .demo-kernel.txt; rm -f .demo-kernel.txt
	@echo; echo "== a maps file pasted from a 2007 RHEL 5 i386 machine, explained with no program and no process"
	@echo "\$$ elfmap explain --maps testdata/maps/rhel5-i386-exec-shield.maps"
	@$(ELFMAP) explain --maps testdata/maps/rhel5-i386-exec-shield.maps
	@echo; echo "== where ls's libraries come from"
	@echo "\$$ elfmap deps /bin/ls"
	@$(ELFMAP) deps /bin/ls

# The kernel lab (lab/README.md): boots Debian's kernels under qemu, records real maps there,
# and checks plan --kernel on this host against them (~20 minutes; not part of make test).
kernels: deps testdata build
	$(MAKE) -C lab kernels

# Timing against ld.so --list, ldd and libtree (never a timed test).
bench: build
	@command -v hyperfine >/dev/null && command -v libtree >/dev/null || \
	  { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq hyperfine libtree >/dev/null; }
	bench/run.sh

# Differential testing against the real kernel (FUZZING.md): ELFMAP_DIFF_N mutants (10,000)
# of the test programs and a few system ones, elfmap's verdict and maps against execve's.
differential: deps testdata
	ELFMAP_DIFF_N=$${ELFMAP_DIFF_N:-10000} $(CARGO) test --profile test-release --test differential -- --ignored differential_full --nocapture

# Fuzzing (not part of `make test`; FUZZING.md): every target for FUZZ_SECONDS each (600)
# under cargo-fuzz (nightly), with a 2 GiB memory limit.
fuzz: deps testdata
	fuzz/run.sh $${FUZZ_SECONDS:-600}

clean:
	$(CARGO) clean
	$(MAKE) -C testdata clean
