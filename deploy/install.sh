#!/usr/bin/env bash
# Install fer-edge as a systemd service on Raspberry Pi OS (Bookworm or Trixie) or Debian.
# Usage: sudo deploy/install.sh [--with-coral]
# Run from a checkout of this repository. Installs only the runtime (no TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != "0" ]; then echo "run as root: sudo $0" >&2; exit 1; fi

PREFIX=/opt/fer-edge
apt-get update
# python3-picamera2 comes from Raspberry Pi OS's archive; on plain Debian it is skipped.
apt-get install -y python3-venv python3-pip
apt-get install -y python3-picamera2 || echo "python3-picamera2 not available: USB cameras and files still work"
if [ "${1:-}" = "--with-coral" ]; then
    echo "Coral: add https://packages.cloud.google.com/apt coral-edgetpu-stable and install libedgetpu1-std first"
fi

id fer-edge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/fer-edge --shell /usr/sbin/nologin fer-edge
usermod -aG video fer-edge
getent group plugdev >/dev/null && usermod -aG plugdev fer-edge

mkdir -p "$PREFIX"
cp -r pyproject.toml README.md edge_runtime train convert models "$PREFIX"/
# --system-site-packages makes apt's picamera2 (and libcamera) visible inside the venv.
python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --upgrade pip
"$PREFIX/venv/bin/pip" install "$PREFIX[service]"

mkdir -p /etc/fer-edge
[ -f /etc/fer-edge/config.toml ] || cp deploy/config.toml /etc/fer-edge/config.toml
"$PREFIX/venv/bin/edge-runtime" check-config /etc/fer-edge/config.toml

cp deploy/fer-edge.service /etc/systemd/system/fer-edge.service
systemctl daemon-reload
systemctl enable --now fer-edge.service
systemctl --no-pager status fer-edge.service || true
echo "Follow the events: journalctl -u fer-edge -f"
