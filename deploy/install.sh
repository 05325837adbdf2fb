#!/usr/bin/env bash
# Install fer-edge as a systemd service on Raspberry Pi OS (Bookworm or Trixie, 64-bit) or Debian.
#
#   sudo deploy/install.sh [--with-coral]     the service: user, venv in /opt/fer-edge, config, unit, enable + start
#   deploy/install.sh --venv-only DIR         only the runtime's venv, at DIR, built exactly as the service's
#
# Run from a checkout of this repository. Installs only the runtime (no TensorFlow).
#
# The venv is made with --system-site-packages so that apt's picamera2 and libcamera are visible in it. Those apt
# packages are compiled against the system's NumPy (1.24 on Bookworm), and pip would otherwise replace it inside the
# venv with NumPy 2 (opencv-python-headless 4.11+ requires it), after which apt's extensions (picamera2's simplejpeg,
# for one) fail to import ("numpy.dtype size changed"). So pip is constrained to the system's NumPy, exactly: it then
# picks an OpenCV wheel built for it, and apt's packages keep working. Where the system has no NumPy, pip chooses.
set -euo pipefail
cd "$(dirname "$0")/.."
SYSTEM_PYTHON=${SYSTEM_PYTHON:-/usr/bin/python3}  # the interpreter apt's packages belong to

build_venv() {  # build_venv DIR: the runtime's venv, keeping the system's NumPy
    local venv=$1
    "$SYSTEM_PYTHON" -m venv --system-site-packages "$venv"
    local constraints="$venv/fer-edge-constraints.txt"
    if system_numpy=$("$SYSTEM_PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null); then
        echo "numpy==$system_numpy" > "$constraints"
        echo "keeping the system's NumPy $system_numpy (apt's extensions are built against it)"
    else
        : > "$constraints"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --constraint "$constraints" ".[service]"
    # The check that matters on a Pi: apt's camera stack still imports beside the runtime.
    "$venv/bin/python" -c 'import numpy, cv2, ai_edge_litert; print("numpy", numpy.__version__, "opencv", cv2.__version__)'
    if "$SYSTEM_PYTHON" -c 'import picamera2' 2>/dev/null; then
        "$venv/bin/python" -c 'import picamera2; print("picamera2 imports in the venv")'
    fi
}

if [ "${1:-}" = "--venv-only" ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 --venv-only DIR" >&2; exit 2; }
    build_venv "$2"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then echo "run as root: sudo $0" >&2; exit 1; fi
if [ "$(uname -m)" != "aarch64" ] && [ "$(uname -m)" != "x86_64" ]; then
    echo "unsupported architecture $(uname -m): use 64-bit Raspberry Pi OS (no LiteRT/OpenCV/NumPy wheels for it)" >&2
    exit 1
fi

PREFIX=/opt/fer-edge
apt-get update
# python3-picamera2 comes from Raspberry Pi OS's archive; on plain Debian it is skipped.
apt-get install -y python3-venv python3-pip python3-numpy
apt-get install -y python3-picamera2 || echo "python3-picamera2 not available: USB cameras and files still work"
if [ "${1:-}" = "--with-coral" ]; then
    echo "Coral: add https://packages.cloud.google.com/apt coral-edgetpu-stable and install libedgetpu1-std first"
fi

id fer-edge >/dev/null 2>&1 || useradd --system --home-dir /var/lib/fer-edge --shell /usr/sbin/nologin fer-edge
usermod -aG video fer-edge
getent group plugdev >/dev/null && usermod -aG plugdev fer-edge

mkdir -p "$PREFIX"
cp -r models docs "$PREFIX"/
install -m 0644 README.md LICENSE "$PREFIX"/  # the unit's Documentation= points here
build_venv "$PREFIX/venv"

mkdir -p /etc/fer-edge
[ -f /etc/fer-edge/config.toml ] || install -m 0644 deploy/config.toml /etc/fer-edge/config.toml  # check-config refuses a group- or world-writable config
"$PREFIX/venv/bin/edge-runtime" check-config /etc/fer-edge/config.toml

cp deploy/fer-edge.service /etc/systemd/system/fer-edge.service
systemctl daemon-reload
systemctl enable --now fer-edge.service
systemctl --no-pager status fer-edge.service || true
echo "Follow the events: journalctl -u fer-edge -f"
