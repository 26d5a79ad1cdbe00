"""Policy node benchmark over real DDS: command publish jitter at the control rate, and a
checkpoint hot swap under load (missed control ticks, time from manifest to first command
computed with the new weights).

  .venv/bin/python bench/bench_policy_node.py [--seconds 60] [--preset tiny] [--swaps 3]
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

from hiors_common.robot import HOME_Q, JOINT_NAMES
from hiors_common.ros_env import use_local_ros_network
from hiors_common.topics import CHECKPOINT, JOINT_STATES, POLICY_COMMAND, POLICY_VERSION, camera_topic, latched_qos

use_local_ros_network()

import rclpy  # noqa: E402
import torch  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402

from hiors_common.testing import NodeProcess  # noqa: E402
from hiors_policy.checkpoint import save_checkpoint  # noqa: E402
from hiors_policy.checkpoint_transport import build_manifest  # noqa: E402
from hiors_policy.config import make_config  # noqa: E402
from hiors_policy.modeling import Pi0Policy  # noqa: E402
from hiors_policy.processing import NormStats  # noqa: E402

JOINTS = list(JOINT_NAMES)
OFFSET = 100.0
LATCHED = latched_qos()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=float, default=60.0)
    ap.add_argument('--preset', default='tiny')
    ap.add_argument('--rate', type=float, default=10.0)
    ap.add_argument('--swaps', type=int, default=3, help='checkpoints hot-swapped in a row')
    ap.add_argument('--swap-window', type=float, default=6.0, help='seconds observed after each swap')
    ap.add_argument('--inline-limit-mb', type=float, default=None,
                    help='checkpoints above this travel by file:// URI (default: the transport default)')
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    key = os.path.join(tmp, 'key')
    open(key, 'w').write('bench-key')
    proc = NodeProcess('hiors_policy.policy_node', ros_args=[
        '-r', '__node:=policy', '-p', f'checkpoint_key_file:={key}', '-p', f'preset:={args.preset}',
        '-p', f'control_rate_hz:={args.rate}', '-p', f'checkpoint_dirs:=[{tmp}]']).start()
    rclpy.init()
    node = rclpy.create_node('bench_policy_node')
    stamps, versions = [], []
    commands = []
    node.create_subscription(
        Float64MultiArray, POLICY_COMMAND,
        lambda m: (stamps.append(time.monotonic()), commands.append((stamps[-1], max(m.data)))), 50)
    node.create_subscription(String, POLICY_VERSION,
                             lambda m: versions.append((time.monotonic(), m.data)), LATCHED)
    pub_js = node.create_publisher(JointState, JOINT_STATES, 10)
    pubs = {c: node.create_publisher(Image, camera_topic(c), 2) for c in ('front', 'wrist')}
    pub_ckpt = node.create_publisher(String, CHECKPOINT, LATCHED)
    pixels = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8).tobytes()

    def run_for(seconds):
        end, last = time.monotonic() + seconds, 0.0
        while time.monotonic() < end:
            if time.monotonic() - last >= 1.0 / 30:
                pub_js.publish(JointState(name=JOINTS, position=list(HOME_Q)))
                for p in pubs.values():
                    p.publish(Image(height=224, width=224, encoding='rgb8', step=672, data=pixels))
                last = time.monotonic()
            rclpy.spin_once(node, timeout_sec=0.005)

    t_start = time.monotonic()
    while not stamps and time.monotonic() - t_start < 60:
        run_for(0.5)                           # node start-up (torch import, model build)
    run_for(2.0)                               # warm-up
    stamps.clear()
    run_for(args.seconds)
    period = np.diff(stamps)
    target = 1.0 / args.rate
    err = (period - target) * 1000
    print(f'command jitter over {args.seconds:.0f} s at {args.rate:.0f} Hz ({len(stamps)} commands): '
          f'period error mean {err.mean():+.2f} ms, std {err.std():.2f} ms, max |err| {np.abs(err).max():.2f} ms')

    # Hot swaps under load: the first one also builds the node's spare model; later ones reuse
    # the retired model as the spare.
    config = make_config(args.preset)
    for n in range(1, args.swaps + 1):
        version = f'bench-v{n}'
        sign = 1.0 if n % 2 else -1.0
        path = os.path.join(tmp, f'swap{n}.safetensors')
        # Each version's action mean is offset by +-OFFSET, so its commands are recognisable
        # (cross-fade included) among the previous weights' (|a| of a few units at most).
        stats = NormStats.identity(7, 7)
        stats.action_mean = stats.action_mean + sign * OFFSET
        save_checkpoint(path, Pi0Policy(config), config, stats, version)
        size = os.path.getsize(path)
        kw = {} if args.inline_limit_mb is None else {'inline_limit_bytes': int(args.inline_limit_mb * 1e6)}
        manifest = build_manifest(path, version, b'bench-key', **kw)
        how = 'inline' if manifest['inline_b64'] else 'by file:// URI'
        stamps.clear()
        commands.clear()
        t_pub = time.monotonic()
        pub_ckpt.publish(String(data=json.dumps(manifest)))
        run_for(args.swap_window)
        swapped = [t for t, v in versions if v == version]
        gaps = np.diff([s for s in stamps])
        missed = int(np.sum(np.round(gaps / target) - 1).clip(min=0)) if len(gaps) else -1
        if swapped:
            first_new = next((t for t, v in commands if sign * v > OFFSET / 5), float('nan'))
            print(f'hot swap {n} of a {size / 1e6:.1f} MB checkpoint ({how}): version live '
                  f'{1000 * (swapped[0] - t_pub):.0f} ms after publish; first command from the new weights '
                  f'{1000 * (first_new - t_pub):.0f} ms after publish; missed control ticks in the '
                  f'{args.swap_window:.0f} s around the swap: {missed}', flush=True)
        else:
            print(f'hot swap {n}: the new version never went live within {args.swap_window:.0f} s', flush=True)
    proc.stop()
    rclpy.shutdown()


if __name__ == '__main__':
    torch.set_num_threads(1)
    main()
