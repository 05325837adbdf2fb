#!/usr/bin/env bash
# The Pi install on a Debian 12 arm64 root, under qemu-user: tests/test_arm64_install.py runs this as root.
#
#   pi_install.sh WORK REPO PHOTO
#
# Builds WORK/root with mmdebstrap (arm64, Python with apt's NumPy), copies the checkout in, runs
# `deploy/install.sh --venv-only` inside it, and runs the runtime on PHOTO. Prints `numpy-file: PATH` and the
# runtime's JSON lines. Two traps of qemu-user are handled here: XNNPACK (inside LiteRT) reads /proc/cpuinfo and
# segfaults on the host's x86 one, so an ARM cpuinfo (a Pi 4's) is bind-mounted over it; and qemu's default CPU
# model ("max") gives silently wrong results, so QEMU_CPU=cortex-a72 (a Pi 4's core) is set.
set -euo pipefail
work=$1 repo=$2 photo=$3
root=$work/root
here=$(cd "$(dirname "$0")" && pwd)
mounted=()
cleanup() {  # in reverse order, on every exit path
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT

[ -d "$root/usr" ] || mmdebstrap --quiet --arch=arm64 --variant=apt \
    --include=python3,python3-venv,python3-pip,python3-numpy,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian  # (a root already there is reused: reruns by hand)

mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind "$here/cpuinfo" "$root/proc/cpuinfo" && mounted+=("$root/proc/cpuinfo")
mount -t sysfs -o ro sysfs "$root/sys" && mounted+=("$root/sys")  # cpuinfo also reads the CPU lists here
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
cp /etc/resolv.conf "$root/etc/resolv.conf"
# pip inside the root reaches the same index as the host: its configuration and CA bundle.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"

mkdir -p "$root/opt/src"
tar -C "$repo" --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md LICENSE MANIFEST.in \
    edge_runtime train convert deploy docs | tar -C "$root/opt/src" -xf -
cp "$photo" "$root/opt/photo.jpg"

env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU=cortex-a72 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /usr/sbin/chroot "$root" /bin/bash -euo pipefail -c '
        uname -m
        cd /opt/src && deploy/install.sh --venv-only /opt/venv
        /opt/venv/bin/python -c "import numpy; print(\"numpy-file:\", numpy.__file__)"
        cd / && /opt/venv/bin/edge-runtime run --source /opt/photo.jpg
    '
