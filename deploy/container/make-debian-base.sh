#!/bin/sh
# Build a minimal Debian base image (python3, python3-venv, tini,
# ca-certificates) from Debian packages alone, for machines that can reach a
# Debian mirror but no image registry.  Needs root, debootstrap and podman.
#
#   deploy/container/make-debian-base.sh [TAG]
#
# TAG defaults to localhost/deepaas-base:bookworm.  Environment:
#   DEBIAN_SUITE   (bookworm)                      the Debian release
#   DEBIAN_MIRROR  (http://deb.debian.org/debian)  where the packages come from
#   DEBOOTSTRAP_CACHE  a folder that keeps the downloaded packages between
#                  runs (debootstrap --cache-dir; absolute path)
set -eu

tag=${1:-localhost/deepaas-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" -ne 0 ]; then
    echo "make-debian-base.sh: debootstrap needs root" >&2
    exit 1
fi
for tool in debootstrap podman tar; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "make-debian-base.sh: $tool is not installed (apt-get install debootstrap podman)" >&2
        exit 1
    fi
done

root=$(mktemp -d "${TMPDIR:-/var/tmp}/deepaas-base.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM

cache=""
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then
    mkdir -p "$DEBOOTSTRAP_CACHE"
    cache="--cache-dir=$DEBOOTSTRAP_CACHE"
fi
# shellcheck disable=SC2086  # $cache is empty or one option
debootstrap --variant=minbase $cache \
    --include=python3,python3-venv,tini,ca-certificates \
    "$suite" "$root" "$mirror"

# Security updates come from their own archive; the base is only as fresh as
# the day it is built, so rebuild it regularly.
if [ "$mirror" = "http://deb.debian.org/debian" ] && [ "$suite" != sid ]; then
    echo "deb http://deb.debian.org/debian-security $suite-security main" \
        >>"$root/etc/apt/sources.list"
    chroot "$root" apt-get update
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -y upgrade
fi

# What an image does not need: package lists, caches, documentation.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/root/.cache
# debootstrap leaves the build host's name and resolver; the container
# runtime provides both.
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

tar -C "$root" --numeric-owner -c . | podman import \
    --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$tag"
echo "make-debian-base.sh: built $tag"
