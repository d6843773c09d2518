#!/usr/bin/env bash
# The runtime stage of deploy/Dockerfile, checked without a container engine (none runs here):
# a minimal Debian bookworm root made by debootstrap from Debian's own mirror (kept between runs
# in CACHE), the packages that stage installs, its user, and the binary and config it copies;
# then wsdrain runs in that root as the image's non-root user.
#   container_runtime_test.sh SOURCE_DIR WSDRAIN_BINARY [CACHE]
set -euo pipefail
src=$1 binary=$2 cache=${3:-/var/cache/wsdrain-tests}
dockerfile=$src/deploy/Dockerfile

# The build stage copies only some folders: they must be enough to configure and build.
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$src/CMakeLists.txt" "$ctx/"
for dir in $(sed -n 's/^COPY \([a-z/]*\) .*/\1/p' "$dockerfile" | grep -v '^config/'); do
  mkdir -p "$ctx/$(dirname "$dir")" && cp -r "$src/$dir" "$ctx/$dir"
done
cmake -S "$ctx" -B "$ctx/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSDRAIN_BUILD_TESTS=OFF > /dev/null
ninja -C "$ctx/build" -n wsdrain > /dev/null
echo "build stage OK: its sources configure and define the wsdrain target"

if [[ $(id -u) -ne 0 ]] || ! command -v debootstrap > /dev/null; then
  echo "skip: the runtime stage check needs root and debootstrap (scripts/deps.sh --test installs it)"; exit 77
fi
base=$cache/bookworm-minbase
if [[ ! -x $base/bin/sh ]]; then
  rm -rf "$base.tmp" && mkdir -p "$cache"
  debootstrap --variant=minbase bookworm "$base.tmp" http://deb.debian.org/debian > "$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log"; exit 1; }
  mv "$base.tmp" "$base"
fi
root=$(mktemp -d)
trap 'rm -rf "$root" "$ctx"' EXIT
cp -a "$base/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"

# The runtime stage: the packages of its apt-get line, and its useradd.
stage=$(sed -n '/^FROM debian:bookworm-slim/,$p' "$dockerfile")
packages=$(grep -o 'install -y --no-install-recommends [^\\&]*' <<< "$stage" | sed 's/install -y --no-install-recommends //')
useradd=$(grep -o 'useradd [^\\&]*' <<< "$stage")
[[ -n "$packages" && -n "$useradd" ]] || { echo "cannot read the runtime stage of $dockerfile"; exit 1; }
chroot "$root" apt-get update -qq > /dev/null
# shellcheck disable=SC2086
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages > /dev/null
# shellcheck disable=SC2086
chroot "$root" $useradd

install -D -m 0755 "$binary" "$root/usr/local/bin/wsdrain"
install -D -m 0644 "$src/config/wsdrain.yaml" "$root/etc/wsdrain/wsdrain.yaml"
user=$(sed -n 's/^USER //p' "$dockerfile")
chroot --userspec="$user" "$root" /usr/local/bin/wsdrain --version
chroot --userspec="$user" "$root" /usr/local/bin/wsdrain check --config /etc/wsdrain/wsdrain.yaml
[[ $(chroot --userspec="$user" "$root" id -u) -ne 0 ]] || { echo "the image runs as root"; exit 1; }
echo "runtime stage OK: $packages; runs as $user"
