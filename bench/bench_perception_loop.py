"""Does perception limit a policy that reads estimated object poses? Run it alone on the
bench_learning evaluation instances of a seed (same instances and flow-matching noise, so the
sources are paired), once per pose source, and measure the estimator on every tick by phase.

  MUJOCO_GL=egl .venv/bin/python bench/bench_perception_loop.py --policy pretrained:10demos_poses \\
      --pose-estimator pretrained --seed 0 --instances 60 --sources estimated,true_peg,true_hole,true \\
      --out docs/results/perception_loop_base_s0.json

Pose sources (what the policy's state holds after the joints):
  estimated   the estimator's reading of the peg and hole (as in bench_learning --pose-estimator)
  true_peg    the true peg, the estimated hole
  true_hole   the estimated peg, the true hole
  true        both true (bench_learning --privileged)
A source that does not beat 'estimated' by more than the paired noise says the policy's failures
are its control, not its perception. Per-phase errors: the scripted expert's phase reading of each
tick (what it would do there), peg and hole x-y error in mm (mean, 95th percentile).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()          # no DDS is used here; set anyway, like every bench
os.environ.setdefault('MUJOCO_GL', 'egl')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_learning import eval_seeds, failure_mode  # noqa: E402

SOURCES = ('estimated', 'true_peg', 'true_hole', 'true')


class PoseSource:
    """Stands in for the estimator in SyncWorld: reads it, logs its error against the true poses
    with the expert's phase, and hands the policy the estimate with the chosen parts made true."""

    def __init__(self, estimator, source: str):
        self.estimator, self.source, self.world = estimator, source, None
        self.config = estimator.config
        self.log = []                                  # (phase, peg error m, hole error m)

    def estimate(self, images, q):
        from hiors.sync_loop import privileged_state
        est = self.estimator.estimate(images, q)
        true = privileged_state(q, self.world.sim.task_state())[len(q):]
        if self.world.human.state == 'running':
            self.log.append((self.world.human.expert.phase, float(np.hypot(*(est - true)[:2])),
                             float(np.hypot(*(est - true)[3:5]))))
        out = est.copy()
        if self.source in ('true_peg', 'true'):
            out[:3] = true[:3]
        if self.source in ('true_hole', 'true'):
            out[3:] = true[3:]
        return out


def phase_errors(log) -> dict:
    """Per expert phase: ticks, peg and hole x-y error [mean, p95] in mm."""
    def mean_p95(v):
        return [round(float(v.mean()), 2), round(float(np.percentile(v, 95)), 2)]
    by_phase = {}
    for phase, peg, hole in log:
        by_phase.setdefault(phase, []).append((peg, hole))
    out = {}
    for phase, v in sorted(by_phase.items()):
        a = 1000 * np.asarray(v)
        out[phase] = {'ticks': len(v), 'peg_mm': mean_p95(a[:, 0]), 'hole_mm': mean_p95(a[:, 1])}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--policy', required=True, help="checkpoint, or 'pretrained:<variant>' (a committed base)")
    ap.add_argument('--pose-estimator', default='pretrained', help="estimator file, or 'pretrained'")
    ap.add_argument('--task', default='peg_insert_narrow')
    ap.add_argument('--seed', type=int, default=0, help="bench_learning seed whose evaluation instances to use")
    ap.add_argument('--instances', type=int, default=60)
    ap.add_argument('--sources', default='estimated,true', help=f'comma list of {SOURCES}; the first is the reference')
    ap.add_argument('--inference-noise-scale', type=float, default=None,
                    help="the policy's PolicyConfig.inference_noise_scale (default: the checkpoint's)")
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default='')
    a = ap.parse_args()
    sources = a.sources.split(',')
    if not set(sources) <= set(SOURCES):
        raise SystemExit(f'--sources: choose from {SOURCES}')
    import torch
    from hiors.demo import base_source, pose_estimator_source
    from hiors.phases import wilson_interval
    from hiors.sync_loop import PolicyActor, SyncWorld
    from hiors_policy.checkpoint import load_checkpoint
    from hiors_policy.object_pose import ObjectPoseEstimator
    torch.set_num_threads(a.threads)
    policy, config, norm_stats, _ = load_checkpoint(base_source(a.policy, a.task))
    if a.inference_noise_scale is not None:
        config.inference_noise_scale = a.inference_noise_scale
    estimator = ObjectPoseEstimator.load(pose_estimator_source(a.pose_estimator, a.task))
    res = {'command': 'MUJOCO_GL=egl .venv/bin/python ' + ' '.join(sys.argv), 'seed': a.seed, 'sources': {}}
    reference = None
    for source in sources:
        stand_in = PoseSource(estimator, source)
        world = SyncWorld(task=a.task, mode='label_only', cameras=config.camera_names, object_estimator=stand_in)
        stand_in.world = world
        actor = PolicyActor(policy, norm_stats)
        outcomes, failures, t0 = [], {}, time.time()
        for i in range(a.instances):
            task_seed, noise_seed = eval_seeds(a.seed, i, 0)
            with torch.random.fork_rng():
                torch.manual_seed(noise_seed)
                r = world.episode(task_seed, actor, record=False)
            outcomes.append(r.outcome == 'success')
            if r.outcome != 'success':
                mode = failure_mode(r)
                failures[mode] = failures.get(mode, 0) + 1
        k, n = sum(outcomes), len(outcomes)
        cell = {'n': n, 'success': k / n, 'ci95': list(wilson_interval(k, n)), 'outcomes': outcomes,
                'failures': failures, 'estimator_error_by_phase': phase_errors(stand_in.log)}
        reference = reference or outcomes
        gained = sum(o and not r for o, r in zip(outcomes, reference))
        lost = sum(r and not o for o, r in zip(outcomes, reference))
        cell['paired_vs_first'] = f'+{gained} / -{lost}'
        res['sources'][source] = cell
        lo, hi = cell['ci95']
        print(f'{source}: {k}/{n} = {k / n:.0%} [{lo:.0%}, {hi:.0%}], {cell["paired_vs_first"]} vs {sources[0]} '
              f'({time.time() - t0:.0f} s); failures {failures}', flush=True)
    if a.out:
        with open(a.out, 'w') as f:
            json.dump(res, f, indent=1)


if __name__ == '__main__':
    main()
