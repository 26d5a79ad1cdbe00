"""Simulation benchmark: scripted-expert success rate over seeded episodes, simulation speed with
and without cameras, and the sim node's camera frame rate over DDS.

  MUJOCO_GL=egl .venv/bin/python bench/bench_sim.py [--episodes 50] [--node-seconds 20]
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()
os.environ.setdefault('MUJOCO_GL', 'egl')

from hiors_sim.expert import ScriptedExpert  # noqa: E402
from hiors_sim.sim_core import PegInsertionSim, SimConfig  # noqa: E402


def expert_success(episodes: int, max_ticks: int, latency_ticks: int):
    sim, expert = PegInsertionSim(), ScriptedExpert()
    wins, lengths = 0, []
    for seed in range(episodes):
        sim.reset(seed)
        expert.reset()
        pending = []
        for tick in range(max_ticks):
            ts = sim.task_state()
            pending.append(expert.act(sim.joint_positions(), ts['peg_pos'], ts['peg_quat'],
                                      ts['hole_pos'], ts['hole_quat']))
            sim.step(pending.pop(0) if len(pending) > latency_ticks else None)
            if sim.success():
                break
        wins += sim.success()
        lengths.append(tick + 1)
        print(f'\r  expert (latency {latency_ticks} ticks): episode {seed + 1}/{episodes}, '
              f'{wins} successes', end='', file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return wins / episodes, float(np.mean(lengths))


def ticks_per_second(render: bool, seconds: float = 5.0):
    sim = PegInsertionSim(SimConfig())
    sim.reset(0)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sim.step()
        if render:
            sim.render('front')
            sim.render('wrist')
        n += 1
    sim.close()
    return n / (time.perf_counter() - t0)


def node_frame_rate(seconds: float):
    import rclpy
    from sensor_msgs.msg import Image
    from hiors_common.testing import NodeProcess
    from hiors_common.topics import camera_topic
    counts = {'front': [], 'wrist': []}
    proc = NodeProcess('hiors_sim.sim_node', ros_args=['-r', '__node:=sim']).start()
    rclpy.init()
    node = rclpy.create_node('bench_sim')
    for name in counts:
        node.create_subscription(Image, camera_topic(name),
                                 lambda m, n=name: counts[n].append(time.monotonic()), 10)
    end = time.monotonic() + seconds + 5
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    proc.stop()
    rclpy.shutdown()
    rates = {}
    for name, stamps in counts.items():
        s = [t for t in stamps if t > stamps[0] + 2.0] if stamps else []
        rates[name] = (len(s) - 1) / (s[-1] - s[0]) if len(s) > 2 else 0.0
    return rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--episodes', type=int, default=50)
    ap.add_argument('--max-ticks', type=int, default=300, help='30 s at 10 Hz')
    ap.add_argument('--node-seconds', type=float, default=20.0)
    args = ap.parse_args()
    print(f'machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'MUJOCO_GL={os.environ["MUJOCO_GL"]}')
    rate0, len0 = expert_success(args.episodes, args.max_ticks, 0)
    rate1, len1 = expert_success(args.episodes, args.max_ticks, 1)
    tps_plain = ticks_per_second(False)
    tps_render = ticks_per_second(True)
    rates = node_frame_rate(args.node_seconds)
    print('| figure | value |')
    print('|---|---|')
    print(f'| expert success, {args.episodes} seeded episodes | '
          f'{rate0:.0%} (mean {len0:.0f} ticks = {len0 / 10:.1f} s) |')
    print(f'| expert success, commands 1 tick late | {rate1:.0%} (mean {len1:.0f} ticks) |')
    print(f'| control ticks/s (10 Hz ticks, 50 physics substeps), no rendering | '
          f'{tps_plain:.0f} ({tps_plain / 10:.0f}x real time) |')
    print(f'| control ticks/s with front + wrist 224x224 rendered each tick | '
          f'{tps_render:.1f} ({tps_render / 10:.1f}x real time) |')
    print(f'| sim node camera rate over DDS (front / wrist), target 10 Hz | '
          f'{rates["front"]:.2f} / {rates["wrist"]:.2f} Hz |')


if __name__ == '__main__':
    main()
