"""The main job: the whole Hi-ORS loop on the simulated arm, unattended.

1. demonstrations: the scripted expert (simulated human, 'demo' mode) drives; every episode is
   recorded by the recorder through the real node graph;
2. base policy: offline flow-matching training on the demonstrations;
3. evaluation of the base policy (the policy alone, the simulated human only labels);
4. online Hi-ORS: policy drives, the simulated human intervenes and labels, the trainer keeps
   successful episodes, trains and hot-swaps checkpoints into the running policy;
5. evaluation of the last online checkpoint;
then a success-rate plot (PNG) and a table.
"""
import json
import os
import shutil
import subprocess
import sys
import time

from hiors_common.atomic import atomic_path, atomic_write_json, atomic_write_text

from .phases import ensure_checkpoint_key, episodes, run_phase, say, success_rate, wilson_interval


# The base the main job post-trains: weak (~30% alone), so what the online phase adds shows at 16
# evaluation episodes (from the 50-demo base, already 75-94% alone, it could not; BENCHMARKS.md).
DEFAULT_BASE = 'pretrained:5demos_poses'

# Train steps per online frame the main job's online phase waits for (BENCHMARKS.md, main job).
ONLINE_TRAIN_STEPS_PER_FRAME = 1.0


def add_arguments(parser):
    parser.add_argument('--out', default='runs/demo', help='run directory (episodes, checkpoints, plot)')
    parser.add_argument('--task', default='peg_insert_narrow',
                        help="simulated task variant (hiors_sim.tasks): 'peg_insert_narrow' or 'peg_insert' (wide)")
    parser.add_argument('--demos', type=int, default=None,
                        help="scripted demonstration episodes (default: as many as the base was trained on, "
                             "its JSON's training_demos; 20 with --base train)")
    parser.add_argument('--base', default=DEFAULT_BASE,
                        help="base policy: 'pretrained' (the committed 50-demo checkpoint for the task, sha256 "
                             "checked; see models/README.md), 'pretrained:<variant>' (a committed variant: "
                             "the default '5demos_poses' is the weak base, ~30%% alone, that reads the object "
                             "poses from the cameras; '10demos' the data-limited image-only one), 'train' (train "
                             "one on this run's demos), or a checkpoint path")
    parser.add_argument('--base-steps', type=int, default=4000, help="with --base train: offline training steps")
    parser.add_argument('--base-batch-size', type=int, default=16, help='batch size of the offline training')
    parser.add_argument('--online-lr', type=float, default=1e-4,
                        help='peak learning rate of the online trainer (fine-tuning the base policy)')
    parser.add_argument('--eval-episodes', type=int, default=16, help='evaluation episodes per policy')
    parser.add_argument('--online-episodes', type=int, default=32, help='online Hi-ORS episodes')
    parser.add_argument('--train-steps-per-frame', type=float, default=ONLINE_TRAIN_STEPS_PER_FRAME,
                        help='online phase: before each episode the simulated human waits, as for a scene reset, '
                             'until the trainer has taken this many steps per online frame so far (at most '
                             '60 s per episode); 0 = no wait (the trainer then manages ~0.3 on 2 cores)')
    parser.add_argument('--episode-timeout', type=float, default=30.0, help='episode time limit (s)')
    parser.add_argument('--preset', default='tiny', help='policy preset')
    parser.add_argument('--seed', type=int, default=0)


# The online fine-tuning recipe (BENCHMARKS.md, "Online fine-tuning of the committed base"):
# demos pooled with the online samples (a few early episodes are not trained on hundreds of
# times over), an EMA of the weights from the base on (published = averaged, as the base's), the
# base's batch size, 4 flow-matching draws per observation.
ONLINE_RECIPE = {'trainer.demo_mix': 'pooled', 'trainer.ema_decay': '0.995', 'trainer.batch_size': '16',
                 'trainer.noise_samples': '4'}


def _say(msg):
    say(msg, 'hiors demo')


def base_sidecar(path: str) -> dict | None:
    """The JSON written beside a base checkpoint when it was trained (sha256, training_demos, its
    command and evaluations), or None where it has none."""
    meta_path = path[:-len('.safetensors')] + '.json'
    if not (path.endswith('.safetensors') and os.path.exists(meta_path)):
        return None
    with open(meta_path) as f:
        return json.load(f)


def training_demos(base_path: str, default: int = 20) -> int:
    """How many scripted demonstrations a base policy was trained on (`training_demos` in its sidecar
    JSON). The online phase pools as many: fine-tuning on a subset of the base's demonstrations
    over-fits it to that subset and the policy alone gets worse (BENCHMARKS.md)."""
    return int((base_sidecar(base_path) or {}).get('training_demos', default))


def pretrained_base(task: str, variant: str = '') -> str:
    """A committed base policy of a task (hiors/models/base_<task>[_<variant>].safetensors), after
    checking its sha256 against the sidecar JSON written when it was trained."""
    from hiors_common.paths import package_file
    name = f'base_{task}_{variant}' if variant else f'base_{task}'
    return verified_base(package_file('hiors', 'models', f'{name}.safetensors'), required=True)


def base_pose_estimator(base_path: str) -> str:
    """The object-pose estimator a base policy runs with ('' = none): its sidecar JSON's
    `object_pose_estimator`, a file beside it, sha256-checked against its own JSON."""
    name = (base_sidecar(base_path) or {}).get('object_pose_estimator', '')
    return verified_base(os.path.join(os.path.dirname(base_path), name), required=True) if name else ''


def pose_estimator_source(spec: str, task: str) -> str:
    """The object-pose estimator file a `--pose-estimator` value names: 'pretrained' (committed,
    hiors/models/object_pose_<task>.safetensors, sha256-checked) or a path."""
    if spec == 'pretrained':
        from hiors_common.paths import package_file
        return verified_base(package_file('hiors', 'models', f'object_pose_{task}.safetensors'), required=True)
    return verified_base(spec)


def verified_base(path: str, required: bool = False) -> str:
    """`path`, after checking its sha256 against `sha256` in its sidecar JSON where it has one
    (the committed bases must: `required`); a checkpoint without one passes unchecked."""
    from hiors_common.signing import sha256_file
    expected = (base_sidecar(path) or {}).get('sha256')
    if not expected:
        if required:
            raise RuntimeError(f'{path}: no sidecar JSON with its sha256')
        return path
    digest = sha256_file(path)
    if digest != expected:
        raise RuntimeError(f'{path}: sha256 {digest} does not match {expected} in its JSON')
    return path


def base_source(spec: str, task: str) -> str:
    """The checkpoint a `--base` value names: 'pretrained' or 'pretrained:<variant>' (committed,
    see models/README.md) or a path (sha256-checked where a sidecar JSON gives one)."""
    if spec == 'pretrained' or spec.startswith('pretrained:'):
        return pretrained_base(task, spec.partition(':')[2])
    return verified_base(spec)


def _evaluate(label, out, common, checkpoint, episode_dir, args, per_episode):
    """The policy alone on the same evaluation seeds; the simulated human only labels."""
    run_phase(label, out, dict(common, teleop='sim_human', sim_human_mode='label_only',
                                checkpoint=checkpoint, trainer='false', episode_dir=episode_dir,
                                seed=str(args.seed + 1000), num_episodes=str(args.eval_episodes)),
               args.eval_episodes, per_episode * args.eval_episodes + 60, echo=_say)


def run_demo(args) -> int:
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    ensure_checkpoint_key(out)
    t0 = time.monotonic()
    common = {'episode_timeout_s': str(args.episode_timeout), 'preset': args.preset, 'task': args.task,
              'seed': str(args.seed), 'checkpoint_dir': os.path.join(out, 'checkpoints')}
    per_episode = args.episode_timeout + 10
    base_src = None if args.base == 'train' else base_source(args.base, args.task)
    if args.demos is None:      # 'train' has no sidecar JSON: the default
        args.demos = training_demos(base_src or '')
    estimator = base_pose_estimator(base_src) if base_src else ''
    if estimator:               # the policy node and the trainer read the object poses with it
        common['object_pose_estimator'] = estimator
        _say(f'object poses from the cameras: {estimator}')

    # 1. demonstrations
    demo_dir = os.path.join(out, 'episodes', 'demos')
    have = len(episodes(demo_dir)) if os.path.isdir(demo_dir) else 0
    if have < args.demos:
        _say(f'phase 1/5: collecting {args.demos - have} scripted demonstrations')
        run_phase('demos', out, dict(common, teleop='sim_human', sim_human_mode='demo', policy='false',
                                      trainer='false', episode_dir=demo_dir,
                                      num_episodes=str(args.demos - have)),
                   args.demos - have, per_episode * (args.demos - have) + 60, echo=_say)
    rate, n = success_rate(demo_dir)
    _say(f'demonstrations: {n} episodes, expert success {rate:.0%}')

    # 2. base policy
    base = os.path.join(out, 'base_policy.safetensors')
    if not os.path.exists(base) and base_src:
        _say(f'phase 2/5: base policy from {base_src}')
        shutil.copy(base_src, base)
    if not os.path.exists(base):
        _say(f'phase 2/5: training the base policy offline ({args.base_steps} steps)')
        cmd = [sys.executable, '-m', 'hiors_trainer.train_offline', '--episodes', demo_dir,
               '--steps', str(args.base_steps), '--out', base, '--preset', args.preset,
               '--threads', '2', '--method', 'bc', '--rate-hz', '10', '--batch-size', str(args.base_batch_size),
               '--ema', '0.999']
        if subprocess.run(cmd).returncode != 0:
            _say('base policy training failed')
            return 1

    # 3. evaluate the base policy
    eval_base = os.path.join(out, 'episodes', 'eval_base')
    _say(f'phase 3/5: evaluating the base policy ({args.eval_episodes} episodes, no help)')
    _evaluate('eval_base', out, common, base, eval_base, args, per_episode)

    # 4. online Hi-ORS
    online = os.path.join(out, 'episodes', 'online')
    _say(f'phase 4/5: online Hi-ORS ({args.online_episodes} episodes with the simulated human)')
    run_phase('online', out, dict(common, teleop='sim_human', sim_human_mode='intervene',
                                   checkpoint=base, trainer='true', episode_dir=online,
                                   **{'trainer.demo_dir': demo_dir, **ONLINE_RECIPE,
                                      'trainer.lr': str(args.online_lr),
                                      'sim_human.train_steps_per_frame': str(args.train_steps_per_frame)},
                                   seed=str(args.seed + 2000), num_episodes=str(args.online_episodes)),
               args.online_episodes, per_episode * args.online_episodes + 120, echo=_say)
    latest = os.path.join(out, 'checkpoints', 'latest.json')
    final = base
    if os.path.exists(latest):
        with open(latest) as f:
            final = os.path.join(out, 'checkpoints', json.load(f)['checkpoint'])
    else:
        _say('the trainer produced no checkpoint; evaluating the base policy again')

    # 5. evaluate the final policy
    eval_final = os.path.join(out, 'episodes', 'eval_final')
    _say(f'phase 5/5: evaluating {os.path.basename(final)} ({args.eval_episodes} episodes, no help)')
    _evaluate('eval_final', out, common, final, eval_final, args, per_episode)

    results = _report(out, demo_dir, eval_base, online, eval_final, final)
    _say(f'done in {(time.monotonic() - t0) / 60:.1f} min; plot: {results["plot"]}')
    return 0


def _report(out, demo_dir, eval_base, online, eval_final, final):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = []
    for label, d in [('scripted expert (demos)', demo_dir), ('base policy alone', eval_base),
                     ('online Hi-ORS (with human)', online), ('after Hi-ORS, policy alone', eval_final)]:
        rate, n = success_rate(d) if os.path.isdir(d) else (0.0, 0)
        rows.append((label, rate, n, wilson_interval(round(rate * n), n)))
    eps = episodes(online) if os.path.isdir(online) else []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.bar(range(len(rows)), [r[1] * 100 for r in rows], color=['grey', 'tab:blue', 'tab:orange', 'tab:green'])
    ax1.set_xticks(range(len(rows)), [r[0].replace(' (', '\n(').replace(', ', ',\n') for r in rows], fontsize=8)
    ax1.set_ylabel('success rate (%)')
    ax1.set_ylim(0, 100)
    for i, r in enumerate(rows):
        ax1.errorbar([i], [r[1] * 100], yerr=[[(r[1] - r[3][0]) * 100], [(r[3][1] - r[1]) * 100]],
                     color='black', capsize=4)
        ax1.text(i + 0.05, r[3][1] * 100 + 2, f'{r[1]:.0%} (n={r[2]})', ha='center', fontsize=8)
    if eps:
        import numpy as np
        succ = np.array([e['outcome'] == 'success' for e in eps], float)
        interv = np.array([float(e.get('num_interventions', 0) > 0) for e in eps])
        k = np.arange(1, len(eps) + 1)
        ax2.plot(k, np.cumsum(succ) / k * 100, label='success (cumulative)')
        ax2.plot(k, np.cumsum(interv) / k * 100, label='episodes with takeover (cumulative)')
        ax2.set_xlabel('online episode')
        ax2.set_ylabel('%')
        ax2.set_ylim(0, 105)
        ax2.legend(fontsize=8)
    ax2.set_title('online Hi-ORS')
    fig.suptitle('Hi-ORS on the simulated peg-in-hole arm')
    fig.tight_layout()
    plot = os.path.join(out, 'success_rate.png')
    with atomic_path(plot) as tmp:
        fig.savefig(tmp, dpi=110, format='png')
    table = ['| phase | success [95% CI] | episodes |', '|---|---|---|']
    table += [f'| {r[0]} | {r[1]:.0%} [{r[3][0]:.0%}, {r[3][1]:.0%}] | {r[2]} |' for r in rows]
    text = '\n'.join(table)
    print(text)
    atomic_write_text(os.path.join(out, 'results.md'), text + f'\n\nfinal checkpoint: {final}\n')
    atomic_write_json(os.path.join(out, 'results.json'), {'rows': rows, 'final_checkpoint': final},
                      indent=1, sort_keys=False)
    keys = ('demos', 'base_alone', 'online', 'after_alone')
    atomic_write_json(os.path.join(out, 'main_job.json'),
                      {k: {'n': r[2], 'success': r[1], 'ci95': list(r[3])} for k, r in zip(keys, rows)},
                      indent=1, sort_keys=False)
    return {'plot': plot, 'rows': rows}
