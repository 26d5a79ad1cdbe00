#!/usr/bin/env bash
# Set up (idempotent) and run the main job: the full Hi-ORS loop on the simulated arm
# (scripted demonstrations -> base policy -> online Hi-ORS with a simulated human -> plot).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
cd "$ROOT"
exec "$ROOT/.venv/bin/hiors" demo "$@"
