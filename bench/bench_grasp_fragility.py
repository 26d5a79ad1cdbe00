"""Grasp fragility: how often does a held peg tip over or slip when it lands off the hole?

The scripted expert with a mis-perceived hole (it aims `e` mm beside the true hole, random
direction per instance) stands in for a policy's placement error; no rendering, so it is fast.
Reports success and tipped-over counts per aim error, for the scene's chamfer or a sharp rim.

  MUJOCO_GL=egl .venv/bin/python bench/bench_grasp_fragility.py --task peg_insert_narrow --chamfer 0.004
"""
import argparse

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()          # no DDS is used here; set anyway, like every bench


from hiors_sim.expert import run_expert  # noqa: E402
from hiors_sim.scene import CHAMFER  # noqa: E402
from hiors_sim.sim_core import PegInsertionSim, SimConfig  # noqa: E402
from hiors_sim.tasks import task_config  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--task', default='peg_insert_narrow')
    ap.add_argument('--chamfer', type=float, default=CHAMFER, help='lead-in chamfer (m); 0 = sharp rim')
    ap.add_argument('--offsets-mm', default='0,2,3,4,6,8')
    ap.add_argument('--instances', type=int, default=20)
    a = ap.parse_args()
    sim = PegInsertionSim(SimConfig(**dict(task_config(a.task), chamfer_m=a.chamfer)))
    for e in (float(x) for x in a.offsets_mm.split(',')):
        r = [run_expert(sim, 5000 + s, e / 1000) for s in range(a.instances)]
        print(f'{a.task} chamfer {a.chamfer * 1000:.0f} mm, aim {e:g} mm off: '
              f'success {r.count("success")}/{a.instances}, '
              f'tipped {r.count("tipped")}/{a.instances}', flush=True)


if __name__ == '__main__':
    main()
