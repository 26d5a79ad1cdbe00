"""Learning benchmark: success rate of the policy ALONE vs online frames, for Hi-ORS and its
baselines/ablations, over seeds, plus test-time scaling (success within 1..T trials of the same
task instance). Everything runs through the real node graph on the simulated arm.

  MUJOCO_GL=egl .venv/bin/python bench/bench_learning.py \
      --methods hiors,bc,hg_dagger,hiors_no_human --seeds 0,1,2 --budgets 500,1000,2000,3000 \
      --eval-instances 10 --trials 3 --out runs/learning

Per seed: scripted demonstrations and an offline base policy (shared by all methods). Per method:
one online run that snapshots the trainer's latest checkpoint each time the online frame count
(recorded steps) passes a budget; each snapshot is then evaluated with the policy alone.
  hiors           policy + simulated human intervening; trainer keeps successful episodes
  hg_dagger       same robot-side; trainer uses all human-intervention data, no rejection
  hiors_no_human  policy alone online (no takeovers); trainer keeps successful episodes
  bc              the simulated human demonstrates; trainer does BC on the growing demo set
Takes CPU hours at the defaults; results go to <out>/results.json, a table and a plot.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()
os.environ.setdefault('MUJOCO_GL', 'egl')

from hiors.demo import _episodes, _run_phase, _say  # noqa: E402
from hiors.graph import bringup_graph  # noqa: E402
from hiors.supervisor import Supervisor  # noqa: E402

ROBOT_SIDE = {'hiors': ('intervene', 'hiors'), 'hg_dagger': ('intervene', 'hg_dagger'),
              'hiors_no_human': ('label_only', 'hiors'), 'bc': ('demo', 'bc'),
              'hiors_fixed_threshold': ('intervene', 'hiors_fixed_threshold'),
              'hiors_no_filters': ('intervene', 'hiors_no_filters')}


def frames(episode_dir):
    return sum(int(e.get('steps', 0)) for e in _episodes(episode_dir)) if os.path.isdir(episode_dir) else 0


def online_with_snapshots(out, seed, method, base, demo_dir, budgets, common):
    mode, trainer_method = ROBOT_SIDE[method]
    run = os.path.join(out, f'seed{seed}', method)
    ep_dir, ck_dir = os.path.join(run, 'episodes'), os.path.join(run, 'checkpoints')
    snapshots = {}
    specs = bringup_graph(dict(common, teleop='sim_human', sim_human_mode=mode, checkpoint=base, trainer='true',
                               trainer_method=trainer_method, episode_dir=ep_dir, checkpoint_dir=ck_dir,
                               num_episodes='0', seed=str(seed + 2000),
                               **{'trainer.demo_dir': demo_dir, 'trainer.demo_ratio': '0.25'}))
    sup = Supervisor(specs, os.path.join(run, 'logs'), echo=_say).start()
    try:
        pending = sorted(budgets)
        while pending and sup.poll():
            time.sleep(2.0)
            n = frames(ep_dir)
            while pending and n >= pending[0]:
                latest = os.path.join(ck_dir, 'latest.json')
                src = os.path.join(ck_dir, json.load(open(latest))['checkpoint']) if os.path.exists(latest) else base
                dst = os.path.join(run, f'policy_{pending[0]}frames.safetensors')
                shutil.copy(src, dst)
                snapshots[pending[0]] = dst
                _say(f'seed {seed} {method}: {n} online frames -> snapshot for budget {pending[0]}')
                pending.pop(0)
    finally:
        sup.shutdown()
    return snapshots


def evaluate(out, tag, checkpoint, seed, instances, trials, common):
    ep_dir = os.path.join(out, 'eval', tag)
    if not os.path.isdir(ep_dir) or len(_episodes(ep_dir)) < instances * trials:
        shutil.rmtree(ep_dir, ignore_errors=True)
        _run_phase(f'eval_{tag}', out, dict(common, teleop='sim_human', sim_human_mode='label_only',
                                           checkpoint=checkpoint, trainer='false', episode_dir=ep_dir,
                                           seed=str(seed + 1000), num_episodes=str(instances * trials),
                                           **{'sim.repeat_each': str(trials)}),
                   instances * trials, (float(common['episode_timeout_s']) + 10) * instances * trials + 120)
    outcomes = [e['outcome'] == 'success' for e in _episodes(ep_dir)]
    groups = [outcomes[i:i + trials] for i in range(0, len(outcomes) - trials + 1, trials)]
    return {f'success@{k}': sum(any(g[:k]) for g in groups) / max(1, len(groups)) for k in range(1, trials + 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--methods', default='hiors,bc,hg_dagger,hiors_no_human')
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--budgets', default='500,1000,2000,3000')
    ap.add_argument('--demos', type=int, default=10)
    ap.add_argument('--base-steps', type=int, default=1500)
    ap.add_argument('--eval-instances', type=int, default=10)
    ap.add_argument('--trials', type=int, default=3)
    ap.add_argument('--episode-timeout', type=float, default=30.0)
    ap.add_argument('--out', default='runs/learning')
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    key = os.path.join(out, 'checkpoint.key')
    if not os.path.exists(key):
        open(key, 'w').write(os.urandom(32).hex())
    os.environ['HIORS_CHECKPOINT_KEY_FILE'] = key
    common = {'episode_timeout_s': str(args.episode_timeout), 'dashboard': 'false'}
    budgets = [int(b) for b in args.budgets.split(',')]
    results = {}
    for seed in [int(s) for s in args.seeds.split(',')]:
        demo_dir = os.path.join(out, f'seed{seed}', 'demos')
        if len(_episodes(demo_dir)) < args.demos if os.path.isdir(demo_dir) else True:
            _run_phase(f'demos_seed{seed}', out, dict(common, teleop='sim_human', sim_human_mode='demo',
                                                      policy='false', trainer='false', episode_dir=demo_dir,
                                                      seed=str(seed), num_episodes=str(args.demos)),
                       args.demos, (args.episode_timeout + 10) * args.demos + 60)
        base = os.path.join(out, f'seed{seed}', 'base.safetensors')
        if not os.path.exists(base):
            subprocess.run([sys.executable, '-m', 'hiors_trainer.train_offline', '--episodes', demo_dir,
                            '--steps', str(args.base_steps), '--out', base, '--threads', '2', '--method', 'bc',
                            '--rate-hz', '10', '--seed', str(seed), '--no-progress'], check=True)
        results.setdefault('base', {})[seed] = evaluate(out, f'seed{seed}_base', base, seed,
                                                        args.eval_instances, args.trials, common)
        for method in args.methods.split(','):
            snaps = online_with_snapshots(out, seed, method, base, demo_dir, budgets, common)
            for budget, ckpt in snaps.items():
                r = evaluate(out, f'seed{seed}_{method}_{budget}', ckpt, seed, args.eval_instances, args.trials, common)
                results.setdefault(method, {}).setdefault(budget, {})[seed] = r
                _say(f'seed {seed} {method} @ {budget} frames: {r}')
            json.dump(results, open(os.path.join(out, 'results.json'), 'w'), indent=1, default=str)
    report(out, results, args.trials)


def report(out, results, trials):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    lines = ['| method | frames | ' + ' | '.join(f'success@{k}' for k in range(1, trials + 1)) + ' |',
             '|---|---|' + '---|' * trials]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for method, by_budget in results.items():
        if method == 'base':
            continue
        xs = sorted(by_budget)
        means = [np.mean([r['success@1'] for r in by_budget[b].values()]) * 100 for b in xs]
        ax1.plot(xs, means, marker='o', label=method)
        for b in xs:
            cells = [f"{np.mean([r[f'success@{k}'] for r in by_budget[b].values()]):.0%}" for k in range(1, trials + 1)]
            lines.append(f'| {method} | {b} | ' + ' | '.join(cells) + ' |')
        last = by_budget[xs[-1]]
        ax2.plot(range(1, trials + 1), [np.mean([r[f'success@{k}'] for r in last.values()]) * 100
                                        for k in range(1, trials + 1)], marker='o', label=method)
    ax1.set_xlabel('online frames')
    ax1.set_ylabel('success, policy alone (%)')
    ax2.set_xlabel('trials')
    ax2.set_ylabel('success within k trials (%)')
    for ax in (ax1, ax2):
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'learning.png'), dpi=110)
    text = '\n'.join(lines)
    open(os.path.join(out, 'results.md'), 'w').write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
