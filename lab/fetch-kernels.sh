#!/bin/bash
# Download Debian's kernel packages with apt, using the lab's own sources list and state
# (the host's apt configuration, lists and cache are not touched), and extract each one.
#
#   lab/fetch-kernels.sh DATA_DIR
#
# Writes DATA_DIR/kernels/<release>/{vmlinuz,config,lib/modules/<release>/...,arch,suite,version} and DATA_DIR/kernels.tsv
# (release, arch, suite, package, version). Picks, in each suite, the newest ABI of:
#   bullseye            linux-image-5.10.0-N-amd64-unsigned
#   bookworm            linux-image-6.1.0-N-amd64-unsigned, linux-image-6.1.0-N-686-pae-unsigned:i386
#   bookworm-backports  linux-image-6.12.N+deb12-amd64-unsigned
#   trixie              linux-image-6.12.N+deb13-amd64-unsigned
set -euo pipefail
DATA=${1:?usage: fetch-kernels.sh DATA_DIR}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
APTDIR=$DATA/apt
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/etc" "$DATA/debs" "$DATA/kernels"
touch "$APTDIR/status"
KEY=/usr/share/keyrings/debian-archive-keyring.gpg
{
  for s in bullseye bookworm bookworm-backports trixie; do
    echo "deb [arch=amd64,i386 signed-by=$KEY] $MIRROR $s main"
  done
} > "$APTDIR/etc/sources.list"

# Every path apt would read or write points into APTDIR; DEP-11 and translations are off.
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$APTDIR/etc/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::State::status=$APTDIR/status"
  -o "Dir::Cache=$APTDIR/cache" -o "Dir::Cache::archives=$APTDIR/cache/archives"
  -o "APT::Architectures::=amd64" -o "APT::Architectures::=i386"
  -o "Acquire::Languages=none" -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
  -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
  -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root"
)

# apt-get update once a day at most.
if [ -z "$(find "$APTDIR/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
  echo "== apt-get update (lab lists in $APTDIR/lists)"
  apt-get "${APT_OPTS[@]}" update -qq
fi

# madison lines: "pkg | version | mirror suite/main arch Packages". apt-cache parses every
# index at each call (no cache is kept with this state), so it is asked once, for every
# candidate name.
ALL=$(apt-cache "${APT_OPTS[@]}" pkgnames linux-image- 2>/dev/null | sed 's/:i386$//' \
      | grep -E -- '-(amd64|686-pae)-unsigned$' | grep -v -- '-cloud-' | sort -u)
MADISON=$(apt-cache "${APT_OPTS[@]}" madison $ALL $(sed 's/$/:i386/' <<<"$ALL") 2>/dev/null)

# pick SUITE ARCH REGEX: the package matching REGEX with the newest version in SUITE.
pick() {
  local suite=$1 arch=$2 re=$3 best="" bestv="" p v src
  while IFS='|' read -r p v src; do
    p=$(echo $p); p=${p%:i386}; v=$(echo $v)
    grep -qE "$re" <<<"$p" || continue
    case "$src" in *" $suite/main $arch "*) ;; *) continue ;; esac
    if [ -z "$bestv" ] || dpkg --compare-versions "$v" gt "$bestv"; then best=$p; bestv=$v; fi
  done <<<"$MADISON"
  [ -n "$best" ] || { echo "fetch-kernels: no package matching $re in $suite ($arch)" >&2; return 1; }
  echo "$best $bestv"
}

: > "$DATA/kernels.tsv.new"
while read -r suite arch re; do
  read -r pkg ver < <(pick "$suite" "$arch" "$re")
  rel=${pkg#linux-image-}; rel=${rel%-unsigned}
  printf '%s\t%s\t%s\t%s\t%s\n' "$rel" "$arch" "$suite" "$pkg" "$ver" >> "$DATA/kernels.tsv.new"
done <<'EOF'
bullseye amd64 ^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$
bookworm amd64 ^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$
bookworm i386 ^linux-image-6\.1\.0-[0-9]+-686-pae-unsigned$
bookworm-backports amd64 ^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$
trixie amd64 ^linux-image-6\.12\.[0-9]+\+deb13-amd64-unsigned$
EOF
mv "$DATA/kernels.tsv.new" "$DATA/kernels.tsv"

while IFS=$'\t' read -r rel arch suite pkg ver; do
  deb=$(ls "$DATA"/debs/"${pkg}"_*"${arch}".deb 2>/dev/null | head -1 || true)
  # the file name has the version with ':' escaped; check the version from the control file
  if [ -z "$deb" ] || [ "$(dpkg-deb -f "$deb" Version)" != "$ver" ]; then
    echo "== apt-get download $pkg:$arch=$ver"
    (cd "$DATA/debs" && apt-get "${APT_OPTS[@]}" download -q "$pkg:$arch=$ver")
    deb=$(ls "$DATA"/debs/"${pkg}"_*"${arch}".deb | head -1)
  fi
  out=$DATA/kernels/$rel
  if [ ! -s "$out/vmlinuz" ] || [ "$(cat "$out/version" 2>/dev/null)" != "$ver" ]; then
    echo "== extracting $deb"
    rm -rf "$out" "$out.x"; mkdir -p "$out.x"
    dpkg-deb -x "$deb" "$out.x"
    mkdir -p "$out"
    cp "$out.x/boot/vmlinuz-$rel" "$out/vmlinuz"
    cp "$out.x/boot/config-$rel" "$out/config"
    # bookworm and older: /lib/modules; trixie: /usr/lib/modules
    mdir=$(ls -d "$out.x/lib/modules/$rel" "$out.x/usr/lib/modules/$rel" 2>/dev/null | head -1 || true)
    [ -n "$mdir" ] || { echo "fetch-kernels: no modules directory in $deb" >&2; exit 1; }
    mkdir -p "$out/lib/modules"
    mv "$mdir" "$out/lib/modules/$rel"
    rm -rf "$out.x"
    echo "$arch" > "$out/arch"
    echo "$suite" > "$out/suite"
    echo "$ver" > "$out/version"
  fi
  # Debian ships no modules.dep (the package's postinst makes it): make it here.
  [ -s "$out/lib/modules/$rel/modules.dep" ] || depmod -b "$out" "$rel"
done < "$DATA/kernels.tsv"
echo "== kernels:"; cat "$DATA/kernels.tsv"
