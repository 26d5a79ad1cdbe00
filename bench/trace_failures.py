"""Why a saved policy fails: re-run the failed evaluation episodes of a bench_learning run (policy
alone, the same task instances and flow-matching noise as its evaluation) and describe each one.

  MUJOCO_GL=egl .venv/bin/python bench/trace_failures.py \\
      --checkpoint runs/X/seed1/hiors/frames_3000.safetensors --results runs/X/results.json \\
      --method hiors --budget 3000 --seed 1 [--trial 0] [--out trace.json]

For a peg that tips (its axis more than ~11 degrees from vertical): the tick, the scripted expert's
phase reading there and 3 ticks before, the gripper opening (the peg's half-width = holding it)
and the hand's offset from the peg centre 3 ticks before. For a time-out: the expert's phase at the
end and the median peg-hole lateral distance over the last 100 ticks (hovering off the hole vs
never lifting). The evaluation of the run must have used --lead-ticks / --blend-ticks defaults.
With --with-human each failed episode is run once more with the simulated human intervening (same
instance and noise, so both runs coincide up to the first takeover): whether and why it takes over,
and whether the episode is rescued, i.e. whether online episodes hold corrections of this failure.
With --successes-too the episodes the policy solved alone are re-run with the human as well: its
takeovers there replace the policy's own (good) driving in the online data. --human FIELD=VALUE
sets SimHumanConfig fields of the human (e.g. misaligned_m=0.003, approach_funnel_slope=1.5; as
in the bench_learning run traced). --out writes
{"failures": [...], "successes_with_human": [...]} (the latter empty without --successes-too).
"""
import argparse
import json
from collections import Counter
import os
import sys

import numpy as np

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()
os.environ.setdefault('MUJOCO_GL', 'egl')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_learning import eval_seeds, human_overrides  # noqa: E402

TIPPED_COS = 0.98          # world-z component of the peg axis below this: tipping (~11 degrees)


def trace_episode(world, actor, task_seed, noise_seed):
    """One evaluation episode with the arm, gripper and peg logged every control tick."""
    import torch
    from hiors_sim.expert import ScriptedExpert
    kin = world.human.expert.kin
    log, step = [], world.sim.step

    def logged_step(cmd=None):
        q, ts = world.sim.joint_positions(), world.sim.task_state()
        log.append({'phase': world.human.expert.phase, 'gripper': float(q[6]),
                    'hand_minus_peg': (kin.fk(q[:6])[0] - ts['peg_pos']).tolist(),
                    'upright': ScriptedExpert.peg_upright(ts['peg_quat'], TIPPED_COS),
                    'hole_lateral': float(np.linalg.norm(ts['peg_pos'][:2] - ts['hole_pos'][:2]))})
        return step(cmd)
    world.sim.step = logged_step
    try:
        with torch.random.fork_rng():
            torch.manual_seed(noise_seed)
            result = world.episode(task_seed, actor, record=False)
    finally:
        world.sim.step = step
    return result, log


def describe(result, log) -> dict:
    tip = next((k for k, e in enumerate(log) if not e['upright']), None)
    if tip is None:
        lateral = [e['hole_lateral'] for e in log[-100:]] or [float('nan')]
        return {'outcome': result.outcome, 'kind': f'timeout in {result.end_phase}', 'ticks': len(log),
                'hole_lateral_mm_median_last100': round(1000 * float(np.median(lateral)), 1)}
    before = log[max(0, tip - 3)]
    return {'outcome': result.outcome, 'kind': 'tipped', 'tick': tip, 'phase': log[tip]['phase'],
            'phase_3_ticks_before': before['phase'], 'gripper_m': round(before['gripper'], 4),
            'hand_minus_peg_mm': [round(1000 * v, 1) for v in before['hand_minus_peg']],
            'fell_in': result.fell_in}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--checkpoint', required=True)
    ap.add_argument('--results', required=True, help="the bench_learning run's results.json")
    ap.add_argument('--method', default='hiors', help="a method of that run, or 'base'")
    ap.add_argument('--budget', default='3000', help='online frames of the evaluation (0 for the base)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--trial', type=int, default=0, help='which of the evaluation trials per instance')
    ap.add_argument('--trials', type=int, default=1, help="trials per instance in that run's evaluation")
    ap.add_argument('--task', default='peg_insert_narrow')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--with-human', action='store_true',
                    help='also re-run each failure with the simulated human intervening (takeovers, rescue)')
    ap.add_argument('--human', nargs='*', default=[], metavar='FIELD=VALUE',
                    help="SimHumanConfig fields of the simulated human, as in the traced run's --human (e.g. "
                         'misaligned_m=0.003, approach_funnel_slope=1.5)')
    ap.add_argument('--successes-too', action='store_true',
                    help='with --with-human: also re-run the successes with the human (takeovers there replace '
                         'an episode the policy would have finished alone)')
    ap.add_argument('--out', default='')
    args = ap.parse_args()
    import torch
    from hiors.sync_loop import PolicyActor, SyncWorld
    from hiors_policy.checkpoint import load_checkpoint
    from hiors_sim.scene import PEG_HALF
    torch.set_num_threads(args.threads)
    with open(args.results) as f:
        cell = json.load(f)[args.method][str(args.budget)][str(args.seed)]
    outcomes = cell['outcomes'][args.trial::args.trials]
    policy, config, norm_stats, _ = load_checkpoint(args.checkpoint)
    actor = PolicyActor(policy, norm_stats)
    human = human_overrides(args)
    world = SyncWorld(task=args.task, mode='label_only', cameras=config.camera_names,
                      human_overrides=human)      # its expert names the phases
    helped = SyncWorld(task=args.task, mode='intervene', cameras=config.camera_names,
                       human_overrides=human) if args.with_human else None

    def with_human(task_seed, noise_seed) -> dict:
        """The same episode with the simulated human intervening: its outcome and takeovers."""
        with torch.random.fork_rng():
            torch.manual_seed(noise_seed)
            res = helped.episode(task_seed, actor, record=False)
        return {'outcome': res.outcome, 'takeovers': [list(t) for t in helped.human.takeover_log]}

    rows, successes = [], []
    for i, ok in enumerate(outcomes):
        task_seed, noise_seed = eval_seeds(args.seed, i, args.trial)
        if ok:
            if helped is not None and args.successes_too:
                successes.append({'instance': i, **with_human(task_seed, noise_seed)})
                print(json.dumps({'alone': 'success', **successes[-1]}), flush=True)
            continue
        result, log = trace_episode(world, actor, task_seed, noise_seed)
        row = dict(instance=i, **describe(result, log))
        if helped is not None:
            row['with_human'] = with_human(task_seed, noise_seed)
        rows.append(row)
        print(json.dumps(row), flush=True)
    tipped = [r for r in rows if r['kind'] == 'tipped']
    closed = sum(r['gripper_m'] < PEG_HALF + 0.005 for r in tipped)
    print(f'{len(rows)} failures re-run ({sum(r["outcome"] != "success" for r in rows)} failed again): '
          f'{len(tipped)} tipped ({closed} with the fingers closed to the peg, {len(tipped) - closed} open), '
          f'{len(rows) - len(tipped)} time-outs')
    if args.with_human:
        taken = [r for r in rows if r['with_human']['takeovers']]
        print(f'with the simulated human: it took over in {len(taken)} of {len(rows)}, '
              f'{sum(r["with_human"]["outcome"] == "success" for r in rows)} rescued')
    if successes:
        reasons = dict(Counter(reason for r in successes for reason, _ in r['takeovers']))
        print(f'successes alone re-run with the human: it took over in {sum(bool(r["takeovers"]) for r in successes)} '
              f'of {len(successes)} (takeovers by reason {reasons}), '
              f'{sum(r["outcome"] == "success" for r in successes)} still succeed')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({'failures': rows, 'successes_with_human': successes}, f, indent=1)


if __name__ == '__main__':
    main()
