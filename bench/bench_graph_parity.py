"""Graph parity: the same base policy on the same task instances through the real node graph and
through the lock-step engine (hiors.sync_loop), policy alone and online with the simulated human
(no training in either), plus a per-tick trace of where each pair of episodes diverges.

  MUJOCO_GL=egl .venv/bin/python bench/bench_graph_parity.py \
      --checkpoint src/hiors/models/base_peg_insert_narrow.safetensors --instances 32 --out runs/parity

Instances: the graph's sim draws episode k (1-based) of a bringup with seed S from task seed
S * 100003 + k (hiors_sim.sim_node); the lock-step engine is reset to exactly those seeds. The
graph's flow-matching noise is its own, so even a perfect match of the engines diverges once the
two policies draw different noise; the trace (`first_divergence_tick`: the first tick at which any
joint differs by more than --diverge-rad) says how soon, and whether the outcomes differ.
Results: <out>/parity.json (per episode) and, with --json, the summary
`{"instances": n, "core": {"online": x, "alone": y}, "graph": {...}}` (fractions).
"""
import argparse
import json
import os
import sys
import time

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()
os.environ.setdefault('MUJOCO_GL', 'egl')

from hiors.phases import ensure_checkpoint_key, episodes, run_phase, say, wilson_interval  # noqa: E402

INSTANCE_STRIDE = 100003          # hiors_sim.sim_node: task seed = seed * 100003 + episode number
MODES = {'alone': 'label_only', 'online': 'intervene'}


def control_rate_hz() -> float:
    from hiors_sim.sim_core import SimConfig
    return SimConfig().control_rate_hz


def graph_run(args, mode, out):
    ep_dir = os.path.join(out, 'graph', mode)
    if len(episodes(ep_dir)) < args.instances:
        run_phase(f'graph_{mode}', out, {'teleop': 'sim_human', 'sim_human_mode': MODES[mode],
                                         'checkpoint': args.checkpoint, 'trainer': 'false', 'dashboard': 'false',
                                         'task': args.task, 'episode_dir': ep_dir, 'seed': str(args.seed),
                                         'num_episodes': str(args.instances),
                                         'episode_timeout_s': str(args.episode_timeout)},
                  args.instances, (args.episode_timeout + 15) * args.instances + 120)
    return ep_dir


def graph_latency(out, mode):
    """The policy node's camera frame -> command latency summary from its log (logged at shutdown)."""
    from hiors_policy.policy_node import LATENCY_LOG_PREFIX
    path = os.path.join(out, 'logs', f'graph_{mode}', 'policy.log')
    found = {}
    if os.path.exists(path):
        for line in open(path, errors='replace'):
            if LATENCY_LOG_PREFIX in line:
                found = json.loads(line.split(LATENCY_LOG_PREFIX, 1)[1])
    return found


def graph_episodes(ep_dir, n):
    from hiors_recorder.dataset import list_episodes, load_episode
    infos = list_episodes(ep_dir)[:n]
    return [load_episode(info, rate_hz=control_rate_hz(), load_images=False) for info in infos]


def core_run(args, mode, seeds):
    import torch
    from hiors.sync_loop import PolicyActor, SyncWorld
    from hiors_policy.checkpoint import load_checkpoint
    torch.set_num_threads(args.threads)
    policy, config, norm_stats, _ = load_checkpoint(args.checkpoint)
    actor = PolicyActor(policy, norm_stats, lead_ticks=args.lead_ticks, blend_ticks=args.blend_ticks)
    world = SyncWorld(task=args.task, mode=MODES[mode], episode_timeout_s=args.episode_timeout,
                      cameras=config.camera_names, command_delay_ticks=args.command_delay_ticks)
    results = []
    for i, s in enumerate(seeds):
        with torch.random.fork_rng():
            torch.manual_seed(8_000_000 + i)
            results.append(world.episode(s, actor, record=True))
        say(f'core {mode} {i + 1}/{len(seeds)}: {results[-1].outcome} takeovers={results[-1].takeovers}')
    return results, {'lead_ticks': actor.lead_ticks, 'blend_ticks': actor.blend_ticks}


def first_divergence(a, b, threshold):
    """First tick at which the two joint trajectories differ by more than `threshold` rad in any
    joint (-1 = never, over the shorter one), and the largest difference."""
    import numpy as np
    n = min(len(a), len(b))
    if n == 0:
        return -1, 0.0
    d = np.abs(np.asarray(a[:n], float) - np.asarray(b[:n], float)).max(axis=1)
    over = np.nonzero(d > threshold)[0]
    return (int(over[0]) if len(over) else -1), float(d.max())


def summary(rows):
    k, n = sum(r['success'] for r in rows), len(rows)
    lo, hi = wilson_interval(k, n)
    return {'success': k / max(1, n), 'n': n, 'ci95': [round(lo, 3), round(hi, 3)]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--checkpoint', required=True)
    ap.add_argument('--task', default='peg_insert_narrow')
    ap.add_argument('--instances', type=int, default=32)
    ap.add_argument('--seed', type=int, default=3, help="graph bringup seed (the instances' source)")
    ap.add_argument('--modes', default='alone,online')
    ap.add_argument('--episode-timeout', type=float, default=30.0)
    ap.add_argument('--lead-ticks', type=int, default=None,
                    help="lock-step engine: chunk executor lead (default: the policy node's)")
    ap.add_argument('--blend-ticks', type=int, default=None,
                    help="lock-step engine: chunk cross-fade (default: the policy node's)")
    ap.add_argument('--command-delay-ticks', type=int, default=0, help='lock-step engine: command latency')
    ap.add_argument('--diverge-rad', type=float, default=0.02)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default='runs/parity')
    ap.add_argument('--json', default='', help='also write the summary here (e.g. docs/results/graph_parity.json)')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ensure_checkpoint_key(args.out)
    seeds = [args.seed * INSTANCE_STRIDE + k for k in range(1, args.instances + 1)]
    report = {'instances': args.instances, 'task': args.task, 'checkpoint': args.checkpoint,
              'core_latency': {'lead_ticks': args.lead_ticks, 'blend_ticks': args.blend_ticks,
                               'command_delay_ticks': args.command_delay_ticks},
              'core': {}, 'graph': {}, 'episodes': {}}
    for mode in args.modes.split(','):
        t0 = time.time()
        g_eps = graph_episodes(graph_run(args, mode, args.out), args.instances)
        t_graph = time.time() - t0
        if len(g_eps) < args.instances:
            sys.exit(f'graph {mode}: only {len(g_eps)} of {args.instances} episodes finished '
                     f'(logs in {args.out}/logs/graph_{mode})')
        t0 = time.time()
        c_res, latency = core_run(args, mode, seeds)
        report['core_latency'].update(latency)
        t_core = time.time() - t0
        rows = []
        for i, (g, c) in enumerate(zip(g_eps, c_res)):
            # The graph's episode can open with holds (the policy node still waiting for its first
            # chunk): the trace starts at its first command from the policy or the human.
            acting = [k for k, src in enumerate(g.action_source) if src in ('policy', 'human')]
            start = acting[0] if acting else len(g)
            tick, dmax = first_divergence(g.state[start:], c.episode.state if c.episode is not None else [],
                                          args.diverge_rad)
            rows.append({'seed': seeds[i], 'graph': g.info.outcome, 'core': c.outcome,
                         'graph_ticks': len(g), 'core_ticks': 0 if c.episode is None else len(c.episode),
                         'graph_takeovers': int(g.info.num_interventions), 'core_takeovers': c.takeovers,
                         'graph_human_frames': int(g.intervention.sum()),
                         'graph_leading_hold_ticks': start,
                         'graph_hold_ticks': int((g.action_source[start:] == 'hold').sum()),
                         'core_human_frames': 0 if c.episode is None else int(c.episode.intervention.sum()),
                         'first_divergence_tick': tick, 'max_joint_diff_rad': round(dmax, 4),
                         'core_fell_in': c.fell_in})
        report['episodes'][mode] = rows
        report['graph'][mode] = summary([{'success': r['graph'] == 'success'} for r in rows])
        report['core'][mode] = summary([{'success': r['core'] == 'success'} for r in rows])
        report.setdefault('wall_s', {})[mode] = {'graph': round(t_graph), 'core': round(t_core)}
        # Simulated seconds per wall second (issue 12 keeps the lock-step engine >= 5x real time).
        report.setdefault('core_x_real_time', {})[mode] = round(
            sum(r['core_ticks'] for r in rows) / control_rate_hz() / max(t_core, 1e-9), 1)
        report.setdefault('graph_latency', {})[mode] = graph_latency(args.out, mode)
        both = sum(r['graph'] == r['core'] for r in rows)
        div = sorted(r['first_divergence_tick'] for r in rows if r['first_divergence_tick'] >= 0)
        say(f'{mode}: graph {report["graph"][mode]}, core {report["core"][mode]}; same outcome on {both}/{len(rows)}; '
            f'median first divergence tick {div[len(div) // 2] if div else "-"}; '
            f'graph frame -> command {report["graph_latency"][mode] or "not logged"}')
        with open(os.path.join(args.out, 'parity.json'), 'w') as f:
            json.dump(report, f, indent=1)
    if args.json:
        brief = {'instances': args.instances,
                 'core': {m: report['core'][m]['success'] for m in report['core']},
                 'graph': {m: report['graph'][m]['success'] for m in report['graph']},
                 'detail': {k: report.get(k)
                            for k in ('task', 'checkpoint', 'core_latency', 'wall_s', 'core_x_real_time',
                                      'graph_latency')},
                 'ci95': {e: {m: report[e][m]['ci95'] for m in report[e]} for e in ('core', 'graph')}}
        with open(args.json, 'w') as f:
            json.dump(brief, f, indent=1)


if __name__ == '__main__':
    main()
