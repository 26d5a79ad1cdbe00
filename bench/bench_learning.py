"""Learning benchmark: success rate of the policy ALONE vs online frames, for Hi-ORS and its
baselines/ablations, over seeds, plus test-time scaling (success within 1..T trials of the same
task instance).

  MUJOCO_GL=egl .venv/bin/python bench/bench_learning.py --engine core \
      --methods hiors,bc,hg_dagger,hiors_no_human --seeds 0,1,2 --budgets 500,1000,2000,3000,5000 \
      --eval-instances 10 --trials 3 --out runs/learning

Per seed: scripted demonstrations and an offline base policy (shared by all methods). Per method:
one online run from the base policy, snapshotting the trainer's weights each time the online frame
count (recorded steps) passes a budget; every snapshot is evaluated with the policy alone.
  hiors           policy + simulated human intervening; trainer keeps successful episodes
  hg_dagger       same robot-side; trainer uses all human-intervention data, no rejection
  hiors_no_human  policy alone online (no takeovers); trainer keeps successful episodes
  hiors_human_only  hiors robot-side; trainer keeps only the human steps of successful episodes
                  (HG-DAgger plus rejection: what the policy's own steps add or cost)
  hiors_no_filters / hiors_fixed_threshold   ablations of the sampling filters / schedule
  bc              the simulated human demonstrates every online episode; the trainer clones them
                  (every demonstration succeeds, so the same loss is plain BC on the growing set)
  bc_matched      the same, but only as many demonstrated frames as Hi-ORS's human drove by each
                  budget (reported under that budget; needs hiors earlier in --methods)
  demos_only      compute control: the policy runs alone online, the trainer takes the same train
                  steps on the base's demonstrations only (what the steps buy without online data)
Engines:
  core   (default) the nodes' cores in one process, stepped in simulated time (hiors.sync_loop):
         same sim, simulated human, policy and trainer code, no DDS; `--updates-per-frame` train
         steps per recorded frame, new weights after every episode. Minutes per method and seed.
  graph  the real node graph (separate processes over DDS, real bags, signed checkpoint swaps)
         in wall-clock time: 30 s per failed evaluation episode; hours per method and seed.
Results: <out>/results.json, results.md (table) and learning.png.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from hiors_common.robot import JOINT_NAMES
from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()
os.environ.setdefault('MUJOCO_GL', 'egl')

from hiors.phases import ensure_checkpoint_key, episodes, frames, run_phase, say, wilson_interval  # noqa: E402
from hiors.demo import ONLINE_RECIPE, base_source, pose_estimator_source, training_demos  # noqa: E402
from hiors.graph import bringup_graph  # noqa: E402
from hiors.supervisor import Supervisor  # noqa: E402

# method -> (simulated human mode online, trainer method). BC's trainer trains on the online
# episodes (the human's demonstrations) like Hi-ORS: the 'bc' trainer method only reads demo_dir.
ROBOT_SIDE = {'hiors': ('intervene', 'hiors'), 'hg_dagger': ('intervene', 'hg_dagger'),
              'hiors_no_human': ('label_only', 'hiors'), 'bc': ('demo', 'hiors'),
              'hiors_human_only': ('intervene', 'hiors_human_only'),
              'bc_matched': ('demo', 'hiors'),
              'demos_only': ('label_only', 'bc'),
              'hiors_fixed_threshold': ('intervene', 'hiors_fixed_threshold'),
              'hiors_no_filters': ('intervene', 'hiors_no_filters'),
              'hiors_fixed_frequency': ('intervene', 'hiors_fixed_frequency')}


def graph_online(out, seed, method, base, demo_dir, budgets, common, updates_per_frame, label_source):
    mode, trainer_method = ROBOT_SIDE[method]
    run = os.path.join(out, f'seed{seed}', method)
    ep_dir, ck_dir = os.path.join(run, 'episodes'), os.path.join(run, 'checkpoints')
    snapshots = {}
    specs = bringup_graph(dict(common, teleop='sim_human', sim_human_mode=mode, checkpoint=base, trainer='true',
                               trainer_method=trainer_method, episode_dir=ep_dir, checkpoint_dir=ck_dir,
                               num_episodes='0', seed=str(seed + 2000),
                               **{'trainer.demo_dir': demo_dir, **ONLINE_RECIPE,
                                  'sim_human.train_steps_per_frame': str(updates_per_frame),
                                  'trainer.label_source': label_source}))
    sup = Supervisor(specs, os.path.join(run, 'logs'), echo=say).start()
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
                say(f'seed {seed} {method}: {n} online frames -> snapshot for budget {pending[0]}')
                pending.pop(0)
    finally:
        sup.shutdown()
    return snapshots


def graph_evaluate(out, tag, checkpoint, seed, instances, trials, common):
    ep_dir = os.path.join(out, 'eval', tag)
    if not os.path.isdir(ep_dir) or len(episodes(ep_dir)) < instances * trials:
        shutil.rmtree(ep_dir, ignore_errors=True)
        run_phase(f'eval_{tag}', out, dict(common, teleop='sim_human', sim_human_mode='label_only',
                                           checkpoint=checkpoint, trainer='false', episode_dir=ep_dir,
                                           seed=str(seed + 1000), num_episodes=str(instances * trials),
                                           **{'sim.repeat_each': str(trials)}),
                   instances * trials, (float(common['episode_timeout_s']) + 10) * instances * trials + 120)
    return _success_at([e['outcome'] == 'success' for e in episodes(ep_dir)], trials)


def graph_seed(args, out, seed, budgets, results):
    common = {'episode_timeout_s': str(args.episode_timeout), 'dashboard': 'false', 'task': args.task,
              'preset': args.preset}
    demo_dir = os.path.join(out, f'seed{seed}', 'demos')
    if len(episodes(demo_dir)) < args.demos:
        run_phase(f'demos_seed{seed}', out, dict(common, teleop='sim_human', sim_human_mode='demo',
                                                  policy='false', trainer='false', episode_dir=demo_dir,
                                                  seed=str(seed), num_episodes=str(args.demos)),
                  args.demos, (args.episode_timeout + 10) * args.demos + 60)
    base = os.path.join(out, f'seed{seed}', 'base.safetensors')
    if args.base and not os.path.exists(base):
        shutil.copy(args.base, base)
    if not os.path.exists(base):
        subprocess.run([sys.executable, '-m', 'hiors_trainer.train_offline', '--episodes', demo_dir,
                        '--steps', str(args.base_steps), '--out', base, '--threads', str(args.threads),
                        '--method', 'bc', '--preset', args.preset, '--rate-hz', '10', '--seed', str(seed),
                        '--no-progress'], check=True)
    results.setdefault('base', {}).setdefault(0, {})[seed] = graph_evaluate(
        out, f'seed{seed}_base', base, seed, args.eval_instances, args.trials, common)
    for method in filter(None, args.methods.split(',')):      # '' = evaluate the base only
        snaps = graph_online(out, seed, method, base, demo_dir, budgets, common, args.updates_per_frame,
                             args.label_source)
        for budget, ckpt in snaps.items():
            r = graph_evaluate(out, f'seed{seed}_{method}_{budget}', ckpt, seed, args.eval_instances,
                               args.trials, common)
            results.setdefault(method, {}).setdefault(budget, {})[seed] = r
            say(f'seed {seed} {method} @ {budget} frames: {r}')
        save_results(out, results)


# ---------------------------------------------------------------------------- core engine
def _success_at(outcomes, trials):
    """success@k per task instance (`trials` consecutive outcomes each), plus the raw outcomes
    so seeds can be pooled for an interval."""
    groups = [outcomes[i:i + trials] for i in range(0, len(outcomes) - trials + 1, trials)]
    r = {f'success@{k}': sum(any(g[:k]) for g in groups) / max(1, len(groups)) for k in range(1, trials + 1)}
    r['outcomes'] = [bool(o) for o in outcomes]
    return r


def human_overrides(args) -> dict:
    """SimHumanConfig fields of the simulated human (--human FIELD=VALUE ...), each parsed as its
    field's type."""
    import dataclasses
    from hiors_common.params import field_default
    from hiors_sim.sim_human import SimHumanConfig
    types = {f.name: type(field_default(f)) for f in dataclasses.fields(SimHumanConfig)}
    out = {}
    for item in args.human:
        name, _, value = item.partition('=')
        if name not in types or not value:
            raise SystemExit(f'--human {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}')
        out[name] = value.lower() in ('1', 'true', 'yes') if types[name] is bool else types[name](value)
    return out


def mux_overrides(args) -> dict:
    """MuxConfig fields for the lock-step engine's command mux (default: the mux node's own)."""
    return {} if args.mux_blend is None else {'blend_time_s': args.mux_blend}


EVAL_NOISE_SEED = 7_000_000


def eval_seeds(seed: int, instance: int, trial: int) -> tuple[int, int]:
    """(task instance, flow-matching noise seed) of one evaluation episode: held-out instances
    900000.. per seed, and common random numbers: every policy evaluated on this seed meets the same
    noise on each (instance, trial), so a paired comparison shows what the weights changed."""
    return 900000 + 1000 * seed + instance, EVAL_NOISE_SEED + 1000 * seed + 10 * instance + trial


_ESTIMATORS = {}


def object_state(args) -> dict:
    """SyncWorld's object-state fields: the true poses (--privileged), estimated ones
    (--pose-estimator, loaded once), or none."""
    if not args.pose_estimator:
        return {'privileged_state': args.privileged}
    if args.pose_estimator not in _ESTIMATORS:
        from hiors_policy.object_pose import ObjectPoseEstimator
        _ESTIMATORS[args.pose_estimator] = ObjectPoseEstimator.load(args.pose_estimator)
    return {'object_estimator': _ESTIMATORS[args.pose_estimator], 'record_true_poses': args.record_true_poses}


def failure_mode(result) -> str:
    """How a failed evaluation episode (sync_loop.EpisodeResult) failed, for the failure tallies."""
    return f'peg knocked over in {result.fell_in}' if result.fell_in else f'timeout in {result.end_phase}'


def core_evaluate(args, weights, norm_stats, config, seed):
    """The policy alone on eval instances, each tried `trials` times (same instance, new noise)."""
    import torch
    from hiors.sync_loop import PolicyActor, SyncWorld
    from hiors_policy.modeling import Pi0Policy
    policy = Pi0Policy(config)
    policy.load_state_dict(weights)
    actor = PolicyActor(policy, norm_stats, lead_ticks=args.lead_ticks, blend_ticks=args.blend_ticks)
    world = SyncWorld(task=args.task, mode='label_only', episode_timeout_s=args.episode_timeout,
                      mux_overrides=mux_overrides(args), human_overrides=human_overrides(args),
                      cameras=config.camera_names, **object_state(args))
    outcomes, failures = [], {}
    for i in range(args.eval_instances):
        for trial in range(args.trials):
            task_seed, noise_seed = eval_seeds(seed, i, trial)
            with torch.random.fork_rng():          # the training RNG is left as it was
                torch.manual_seed(noise_seed)
                r = world.episode(task_seed, actor, record=False)
            outcomes.append(r.outcome == 'success')
            if r.outcome != 'success':
                mode = failure_mode(r)
                failures[mode] = failures.get(mode, 0) + 1
    return dict(_success_at(outcomes, args.trials), failures=failures)


def core_seed(args, out, seed, budgets, results):
    import torch
    from hiors.sync_loop import PRIVILEGED_OBJECT_DIMS, EpisodeStore, PolicyActor, SyncWorld
    from hiors_policy.checkpoint import load_checkpoint, save_checkpoint
    from hiors_trainer.core import FullWeights, Trainer, TrainerConfig
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    store = EpisodeStore()
    work = os.path.join(out, f'seed{seed}')
    world = SyncWorld(task=args.task, mode='demo', episode_timeout_s=args.episode_timeout,
                      mux_overrides=mux_overrides(args), human_overrides=human_overrides(args),
                      **object_state(args))
    t0 = time.time()
    # With --base, the base's own demonstrations (bench_bc_offline's seeds 0..N-1) for every seed:
    # other demonstrations would be new data the online methods get for free.
    demo_seed0 = 0 if args.base else 100000 * seed
    for i in range(args.demos):
        r = world.episode(demo_seed0 + i)
        if r.outcome == 'success':
            store.add('demos', r.episode)
    say(f'seed {seed}: {len(store.dirs.get("demos", []))}/{args.demos} demonstrations, '
        f'{store.frames("demos")} frames ({time.time() - t0:.0f} s)')

    def trainer(method, out_dir, init='', demo_ratio=0.0, steps=0, batch_size=0):
        cfg = TrainerConfig(batch_size=batch_size, episode_dir='online', demo_dir='demos', out_dir=out_dir,
                            method=method, policy_preset=args.preset, init_checkpoint=init, demo_ratio=demo_ratio,
                            demo_mix=args.demo_mix if init else 'ratio',
                            decay_steps=steps, lr=args.online_lr if init else 0.0, seed=seed,
                            end_lr=args.online_end_lr if init else 0.0,
                            ema_decay=args.online_ema if init else 0.0, noise_samples=args.noise_samples,
                            image_shift_px=args.image_shift,
                            object_pose_noise_m=args.object_pose_noise_m,
                            object_pose_noise_rad=args.object_pose_noise_rad,
                            num_threads=args.threads, intake_interval_s=1e9, checkpoint_every_steps=0,
                            label_source=args.label_source, replan_stride=args.replan_stride,
                            autonomous_weight=args.autonomous_weight,
                            **({} if args.pre_takeover_steps is None
                               else {'pre_takeover_steps': args.pre_takeover_steps}))
        tr = Trainer(cfg, loader=store.loader, lister=store.lister)
        tr.resume_or_init()
        tr.ingest()
        return tr

    t0 = time.time()
    base = os.path.join(work, 'base.safetensors')
    if args.base:                            # one pretrained base for every seed (as pi0 is for the paper)
        os.makedirs(work, exist_ok=True)
        shutil.copy(args.base, base)
    if os.path.exists(base):                 # a re-run with other methods reuses the base policy
        policy, config, norm_stats, _ = load_checkpoint(base)
        weights = policy.state_dict()
        state_dim = len(JOINT_NAMES) + (PRIVILEGED_OBJECT_DIMS if args.privileged or args.pose_estimator else 0)
        if config.state_dim != state_dim:
            raise SystemExit(f'{args.base}: state_dim {config.state_dim} does not match '
                             f'--privileged={args.privileged} / --pose-estimator={args.pose_estimator!r} '
                             f'({len(JOINT_NAMES)} joints, '
                             f'+ {PRIVILEGED_OBJECT_DIMS} with the true object poses)')
        if args.inference_noise_scale is not None:
            config.inference_noise_scale = args.inference_noise_scale
    else:
        tr = trainer('bc', os.path.join(work, 'base_trainer'), steps=args.base_steps, batch_size=args.base_batch_size)
        for _ in range(args.base_steps):
            tr.train_step()
        save_checkpoint(base, FullWeights(tr.model_state()), tr.config, tr.norm_stats, 'base')
        weights, config, norm_stats = tr.model_state(), tr.config, tr.norm_stats
    r = core_evaluate(args, weights, norm_stats, config, seed)
    results.setdefault('base', {}).setdefault(0, {})[seed] = r
    say(f'seed {seed}: base policy ({args.base_steps} steps, {time.time() - t0:.0f} s): {r}')
    max_budget = max(budgets)
    for method in filter(None, args.methods.split(',')):      # '' = evaluate the base only
        mode, trainer_method = ROBOT_SIDE[method]
        t0 = time.time()
        store.dirs.pop('online', None)
        tr = trainer(trainer_method, os.path.join(work, method), init=base, demo_ratio=args.demo_ratio,
                     steps=int(max_budget * args.updates_per_frame), batch_size=args.online_batch_size)
        from hiors_policy.modeling import Pi0Policy
        actor = PolicyActor(Pi0Policy(config), tr.norm_stats, lead_ticks=args.lead_ticks,
                            blend_ticks=args.blend_ticks)
        actor.load(tr.model_state(), tr.norm_stats)
        world = SyncWorld(task=args.task, mode=mode, episode_timeout_s=args.episode_timeout,
                          mux_overrides=mux_overrides(args), human_overrides=human_overrides(args),
                          cameras=config.camera_names, **object_state(args))
        pending = sorted(budgets)
        # BC at matched human frames: it gets as many demonstrated frames as Hi-ORS's human drove
        # by each budget (its cell is reported under that Hi-ORS budget).
        matched = {}
        if method == 'bc_matched':
            curves = results.get('online', {}).get('hiors', {})
            hiors_curve = curves.get(seed) or curves.get(str(seed))     # str: read back from JSON
            if not hiors_curve:
                raise SystemExit('bc_matched needs the hiors method earlier in --methods, or --matched-from '
                                 '(same seed)')
            for b in budgets:
                reached = [c for c in hiors_curve if c['frames'] >= b] or hiors_curve[-1:]
                matched[b] = max(1, reached[0]['human_frames'])
        curve = []
        n = 0
        human_frames = 0
        while pending:
            res = world.episode(100000 * seed + 50000 + n, actor if mode != 'demo' else None)
            n += 1
            if res.episode is not None:
                store.add('online', res.episode)
                human_frames += int(res.episode.intervention.sum())
            tr.ingest()
            frames_now = store.frames('online')
            if tr.ready():
                for _ in range(int(round(args.updates_per_frame * len(res.episode.state) if res.episode else 0))):
                    tr.train_step()
                actor.load(tr.model_state(), tr.norm_stats)      # the hot swap
            curve.append({'frames': frames_now, 'human_frames': human_frames, 'outcome': res.outcome,
                          'takeovers': res.takeovers, 'train_step': tr.step})
            while pending and (frames_now >= matched[pending[0]] if matched else frames_now >= pending[0]):
                ev = core_evaluate(args, tr.model_state(), tr.norm_stats, config, seed)
                # kept for later evaluations (more trials, the graph): <out>/seedN/<method>/frames_B.safetensors
                save_checkpoint(os.path.join(work, method, f'frames_{pending[0]}.safetensors'),
                                FullWeights(tr.model_state()), tr.config, tr.norm_stats, f'{method}@{pending[0]}')
                results.setdefault(method, {}).setdefault(pending[0], {})[seed] = ev
                say(f'seed {seed} {method} @ {pending[0]} frames ({n} episodes, '
                    f'{sum(c["outcome"] == "success" for c in curve)} online successes, '
                    f'{tr.step} train steps, {time.time() - t0:.0f} s): {ev}')
                pending.pop(0)
        results.setdefault('online', {}).setdefault(method, {})[seed] = curve
        save_results(out, results)
        del tr
        store.dirs.pop('online', None)


# ---------------------------------------------------------------------------- driver
def save_results(out, results):
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)


def main():
    from hiors_trainer.core import LABEL_SOURCES, PROFILES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--engine', default='core', choices=['core', 'graph'])
    ap.add_argument('--methods', default='hiors,bc,hg_dagger,hiors_no_human')
    ap.add_argument('--seeds', default='0,1,2')
    ap.add_argument('--budgets', default='500,1000,2000,3000')
    ap.add_argument('--task', default='peg_insert_narrow')
    ap.add_argument('--preset', default='tiny')
    ap.add_argument('--demos', type=int, default=None,
                    help='scripted demonstrations per seed, pooled into online training (default: with --base '
                         "as many as the base was trained on, its JSON's training_demos; else 20)")
    ap.add_argument('--base', default='', help="start every seed from this base checkpoint instead of training one "
                                               "per seed: a path, or 'pretrained' / 'pretrained:10demos' (the "
                                               'committed ones, sha256 checked; src/hiors/models/README.md)')
    ap.add_argument('--base-steps', type=int, default=2000)
    ap.add_argument('--base-batch-size', type=int, default=16)
    ap.add_argument('--updates-per-frame', type=float, default=0.5,
                    help='train steps per online frame (graph engine: the simulated human waits for the trainer '
                         'before each episode, as for a scene reset, at most 60 s)')
    ap.add_argument('--online-lr', type=float, default=1e-4, help='core engine: peak lr of the online fine-tuning')
    ap.add_argument('--online-end-lr', type=float, default=0.0,
                    help='core engine: lr the online phase decays to (cosine over the largest budget x '
                         "--updates-per-frame steps); 0 = the trainer profile's end_lr (cpu: "
                         f"{PROFILES['cpu']['end_lr']:g})")
    ap.add_argument('--pre-takeover-steps', type=int, default=None,
                    help='core engine: autonomous steps this close before a takeover are not trained on '
                         "(TrainerConfig.pre_takeover_steps; default: the trainer's)")
    ap.add_argument('--label-source', default='executed', choices=LABEL_SOURCES,
                    help="chunk labels of every training sample (TrainerConfig.label_source)")
    ap.add_argument('--replan-stride', type=int, default=0,
                    help="core engine: autonomous segments are sampled every this many steps, human ones at every "
                         "step (TrainerConfig.replan_stride; 0 = the policy's re-plan stride)")
    ap.add_argument('--autonomous-weight', type=float, default=1.0,
                    help="core engine: sampling weight of the policy's own steps vs human and demo steps "
                         '(TrainerConfig.autonomous_weight)')
    ap.add_argument('--demo-ratio', type=float, default=0.25)
    ap.add_argument('--demo-mix', default='pooled', choices=['ratio', 'pooled'],
                    help="core engine: demos in online batches at --demo-ratio, or pooled with the online samples")
    ap.add_argument('--inference-noise-scale', type=float, default=None,
                    help='with --base: PolicyConfig.inference_noise_scale of every rollout (online and evaluation)')
    ap.add_argument('--online-batch-size', type=int, default=16,
                    help="core engine: online batch (0 = the trainer profile's)")
    ap.add_argument('--online-ema', type=float, default=0.995,
                    help='core engine: EMA decay of the online weights (0 = off; default = the main job recipe)')
    ap.add_argument('--mux-blend', type=float, default=None,
                    help="core engine: the command mux's takeover / hand-back blend in s (default: the mux node's)")
    ap.add_argument('--human', nargs='*', default=[], metavar='FIELD=VALUE',
                    help='core engine: SimHumanConfig fields of the simulated human, who demonstrates, takes '
                         'over online and labels the evaluations (e.g. misaligned_m=0.003, '
                         'approach_funnel_slope=1.5); default: its own')
    ap.add_argument('--lead-ticks', type=int, default=None,
                    help="core engine: chunk executor lead (default: the policy node's, which gives the graph's "
                         'camera frame -> command latency; 0 = none, as before 2026-12-02 session 20)')
    ap.add_argument('--blend-ticks', type=int, default=None,
                    help="core engine: chunk cross-fade ticks (default: the policy node's; 0 = none)")
    ap.add_argument('--image-shift', type=int, default=0,
                    help="core engine: random-shift augmentation of the online training images (pixels)")
    ap.add_argument('--privileged', action='store_true',
                    help='core engine, upper-bound study: the policy state also holds the true peg and hole '
                         '(x, y, yaw), as if perception were perfect; needs a base trained so '
                         '(bench_bc_offline.py --privileged --save)')
    ap.add_argument('--pose-estimator', default='',
                    help="core engine: the policy state also holds the peg and hole (x, y, yaw) as this "
                         "object-pose estimator file (bench/train_pose_estimator.py; 'pretrained' = the committed "
                         "one of the task) reads them from the cameras; "
                         "needs a base with object poses in its state ('pretrained:10demos_poses', trained with "
                         "the true poses, or bench_bc_offline.py --pose-estimator PATH --save)")
    ap.add_argument('--record-true-poses', action='store_true',
                    help='core engine, upper-bound study with --pose-estimator: the policy acts on the estimated '
                         'poses, the episodes it trains on hold the true ones')
    ap.add_argument('--object-pose-noise-m', type=float, default=0.0,
                    help='core engine: TrainerConfig.object_pose_noise_m (training noise on the object x, y)')
    ap.add_argument('--object-pose-noise-rad', type=float, default=0.0,
                    help='core engine: TrainerConfig.object_pose_noise_rad (training noise on the object yaws)')
    ap.add_argument('--noise-samples', type=int, default=4, help='core engine: flow-matching draws per observation')
    ap.add_argument('--eval-instances', type=int, default=10)
    ap.add_argument('--trials', type=int, default=3)
    ap.add_argument('--episode-timeout', type=float, default=30.0)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default='runs/learning')
    ap.add_argument('--matched-from', default='',
                    help="bc_matched: take Hi-ORS's human frames per budget from this earlier --out run "
                         '(same seeds, budgets and base) instead of a hiors method earlier in --methods')
    ap.add_argument('--report-only', action='store_true', help='re-draw the table and plot from <out>/results.json')
    ap.add_argument('--merge', default='', help='with --report-only: comma list of other --out dirs (same base '
                                                'policy) whose methods and seeds join the report: a seed of a '
                                                'method and budget that <out> lacks is pooled with its own')
    ap.add_argument('--merge-cells', default='', help='with --report-only: comma list of learning.json files (e.g. '
                                                      'docs/results/learning.json) whose cells join the report where '
                                                      '<out> lacks that method and budget (pooled figures only)')
    args = ap.parse_args()
    if args.privileged and (args.engine != 'core' or not args.base):
        raise SystemExit('--privileged: the core engine only, from a --base trained with privileged state')
    if args.pose_estimator and (args.engine != 'core' or not args.base or args.privileged):
        raise SystemExit('--pose-estimator: the core engine only, from a --base trained with it, without --privileged')
    if args.base:
        args.base = base_source(args.base, args.task)
    if args.pose_estimator:
        args.pose_estimator = pose_estimator_source(args.pose_estimator, args.task)
    if args.demos is None:
        args.demos = training_demos(args.base)
    out = os.path.abspath(args.out)
    if args.report_only:
        with open(os.path.join(out, 'results.json')) as f:
            results = json.load(f)
        for other in filter(None, args.merge.split(',')):
            with open(os.path.join(other, 'results.json')) as f:
                more = json.load(f)
            merge_seeds(results, more)
        for path in filter(None, args.merge_cells.split(',')):
            with open(path) as f:
                for c in json.load(f)['cells']:
                    at = results.setdefault(c['method'], {})
                    if not any(int(b) == c['frames'] for b in at):
                        at[c['frames']] = {'merged': {'cell': c}}   # one pre-pooled row (pooled() reads it)
        report(out, results, int(results.get('args', {}).get('trials', args.trials)))
        return
    os.makedirs(out, exist_ok=True)
    ensure_checkpoint_key(out)
    budgets = [int(b) for b in args.budgets.split(',')]
    results = {'args': vars(args)}
    if args.matched_from:
        with open(os.path.join(args.matched_from, 'results.json')) as f:
            results.setdefault('online', {})['hiors'] = json.load(f).get('online', {}).get('hiors', {})
    run_seed = core_seed if args.engine == 'core' else graph_seed
    for seed in [int(s) for s in args.seeds.split(',')]:
        run_seed(args, out, seed, budgets, results)
        save_results(out, results)
        report(out, results, args.trials)


METHOD_KEYS = tuple(ROBOT_SIDE)


def merge_seeds(results, more):
    """Join another run's results into results: every (method or base, budget, seed) row and
    online record results lacks (other seeds of a method are pooled with its own)."""
    for method in METHOD_KEYS + ('base',):
        for budget, rows in (more.get(method) or {}).items():
            mine = results.setdefault(method, {}).setdefault(budget, {})
            for seed, row in rows.items():
                mine.setdefault(seed, row)
    for method, by_seed in (more.get('online') or {}).items():
        mine = results.setdefault('online', {}).setdefault(method, {})
        for seed, record in by_seed.items():
            mine.setdefault(seed, record)


def _mean(rows, key):
    import numpy as np
    return float(np.mean([r[key] for r in rows])) if rows else float('nan')


def pooled(rows, trials):
    """Seeds pooled: instances n, successes within k trials per k (None where a row lacks its
    raw outcomes), and the 95% Wilson interval of success@1."""
    if len(rows) == 1 and 'cell' in rows[0]:     # merged from a learning.json (--merge-cells)
        c = rows[0]['cell']
        wins = {1: round(c['success_at_1'] * c['n'])}
        if c.get('success_at_3') is not None:
            wins.update({2: None, 3: round(c['success_at_3'] * c['n'])})
        return {'n': c['n'], 'wins': {k: wins.get(k) for k in range(1, trials + 1)}, 'ci95': tuple(c['ci95'])}
    groups = []
    for r in rows:
        o = r.get('outcomes')
        if o is None:
            return None
        groups += [o[i:i + trials] for i in range(0, len(o) - trials + 1, trials)]
    n = len(groups)
    wins = {k: sum(any(g[:k]) for g in groups) for k in range(1, trials + 1)}
    return {'n': n, 'wins': wins, 'ci95': wilson_interval(wins[1], n)}


def paired_with_base(results, method, budget):
    """(fixed, broken, pairs): evaluation episodes the base failed and this cell solved, and the
    reverse, over seeds whose base was evaluated on the same instances (common random numbers);
    None where no seed pairs up."""
    row = results.get(method, {}).get(budget) or {}
    if 'merged' in row:
        p = row['merged']['cell'].get('paired_with_base')
        return (p['fixed'], p['broken'], p['pairs']) if p else None
    base = results.get('base', {}).get(0, results.get('base', {}).get('0', {}))
    fixed = broken = pairs = 0
    for seed, row in row.items():
        b = (base.get(seed) or base.get(str(seed)) or {}).get('outcomes')
        o = row.get('outcomes')
        if not b or not o or len(b) != len(o):
            continue
        fixed += sum(1 for x, y in zip(b, o) if y and not x)
        broken += sum(1 for x, y in zip(b, o) if x and not y)
        pairs += len(o)
    return (fixed, broken, pairs) if pairs else None


def cells(results, trials):
    """(method, frames, rows) for the base and every method x budget, in report order."""
    out = []
    base = list(results.get('base', {}).get(0, results.get('base', {}).get('0', {})).values())
    if base:
        out.append(('base', 0, base))
    for method in METHOD_KEYS:
        for b in sorted(results.get(method) or {}, key=int):
            out.append((method, int(b), list(results[method][b].values())))
    return out


def report(out, results, trials):
    """Table (seeds pooled, 95% Wilson interval of success@1) and plots: success vs online
    frames with intervals, test-time scaling at the largest budget, the online success rate.
    Also <out>/learning.json ({"task", "cells": [{"method", "frames", "n", "success_at_1",
    "ci95", "success_at_3"}]})."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    ks = range(1, trials + 1)
    lines = ['| method | online frames | seeds | n | success@1 [95% CI] | ' +
             ''.join(f'success@{k} | ' for k in ks if k > 1) + 'online success with the human | '
             'paired with the base: fixed / broken |',
             '|---|---|---|---|---|' + '---|' * (trials - 1) + '---|---|']
    json_cells = []
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    series = {}
    for method, frames_, rows in cells(results, trials):
        p = pooled(rows, trials)
        curves = results.get('online', {}).get(method, {})
        online = ''
        if curves:
            done = [c for curve in curves.values() for c in curve]
            online = f'{sum(c["outcome"] == "success" for c in done)}/{len(done)}'
        if p is None:
            at = {k: _mean(rows, f'success@{k}') for k in ks}
            cell = f'{at[1]:.0%} [-]'
            rest = [f'{at[k]:.0%}' for k in ks if k > 1]
        else:
            at = {k: None if p['wins'][k] is None else p['wins'][k] / max(1, p['n']) for k in ks}
            lo, hi = p['ci95']
            cell = f'{at[1]:.0%} [{lo:.0%}, {hi:.0%}]'
            rest = ['-' if at[k] is None else f'{at[k]:.0%}' for k in ks if k > 1]
            seeds = rows[0]['cell'].get('seeds', 1) if 'cell' in rows[0] else len(rows)
            json_cells.append({'method': method, 'frames': frames_, 'n': p['n'], 'success_at_1': at[1],
                               'ci95': [lo, hi], 'success_at_3': at[3] if trials >= 3 else None, 'seeds': seeds})
            series.setdefault(method, []).append((frames_, at[1], lo, hi, at))
        label = 'base policy (demos only)' if method == 'base' else method
        pair = None if method == 'base' else paired_with_base(results, method, next(
            b for b in results[method] if int(b) == frames_))
        pair_cell = f'+{pair[0]} / -{pair[1]} of {pair[2]}' if pair else ''
        if json_cells and json_cells[-1]['method'] == method and json_cells[-1]['frames'] == frames_:
            json_cells[-1]['paired_with_base'] = (None if pair is None else
                                                  {'fixed': pair[0], 'broken': pair[1], 'pairs': pair[2]})
        lines.append(f'| {label} | {frames_} | {len(rows)} | {p["n"] if p else "-"} | {cell} | ' +
                     ''.join(f'{r} | ' for r in rest) + f'{online} | {pair_cell} |')
    base_pt = series.pop('base', None)
    for method, pts in series.items():
        pts = ([base_pt[0]] if base_pt else []) + pts
        x = [q[0] for q in pts]
        y = np.array([q[1] for q in pts]) * 100
        err = np.array([[q[1] - q[2], q[3] - q[1]] for q in pts]).T * 100
        line = axes[0].errorbar(x, y, yerr=err, marker='o', capsize=3, label=method)
        last = pts[-1]
        tts = [(k, last[4][k] * 100) for k in ks if last[4][k] is not None]
        axes[1].plot([k for k, _ in tts], [v for _, v in tts], marker='o', color=line[0].get_color(),
                     label=f'{method} @ {last[0]} frames')
        curves = results.get('online', {}).get(method, {})
        w = 10
        for i, curve in enumerate(curves.values()):
            succ = np.array([c['outcome'] == 'success' for c in curve], float)
            fr = np.array([c['frames'] for c in curve])
            if len(succ) >= w:
                axes[2].plot(fr[w - 1:], np.convolve(succ, np.ones(w) / w, 'valid') * 100,
                             color=line[0].get_color(), alpha=0.6, label=method if i == 0 else None)
    axes[0].set_xlabel('online frames')
    axes[0].set_ylabel('success, policy alone (%)')
    axes[0].set_title('policy alone vs online frames (seeds pooled, 95% Wilson)')
    axes[1].set_xticks(list(ks))
    axes[1].set_xlabel('trials of the same task instance')
    axes[1].set_ylabel('success within k trials (%)')
    axes[1].set_title('test-time scaling, largest budget')
    axes[2].set_xlabel('online frames')
    axes[2].set_ylabel('online success, last 10 episodes (%)')
    axes[2].set_title('online episodes with the human')
    for ax in axes:
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, 'learning.png'), dpi=110)
    text = '\n'.join(lines)
    with open(os.path.join(out, 'results.md'), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(out, 'learning.json'), 'w') as f:
        json.dump({'task': results.get('args', {}).get('task', ''), 'trials': trials, 'cells': json_cells}, f, indent=1)
    print(text)


if __name__ == '__main__':
    main()
