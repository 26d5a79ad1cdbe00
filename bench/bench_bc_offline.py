"""Can the policy learn the task at all? Behaviour cloning without ROS, as fast as the CPU allows.

Scripted-expert demonstrations straight from the MuJoCo core (no DDS, no bags), the trainer core
on them, then the policy alone on held-out task instances in the same core. It separates "the
model/data cannot learn this" from "the ROS loop loses something", and is where chunk length,
image size, demo count and task width were chosen (BENCHMARKS.md).

  MUJOCO_GL=egl .venv/bin/python bench/bench_bc_offline.py --demos 20 --steps 1500 --eval 10
"""
import argparse
import json
import os
import time

from hiors_common.atomic import atomic_write_json
from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()          # no DDS is used here; set anyway, like every bench
os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_learning import human_overrides  # noqa: E402
from hiors.sync_loop import PRIVILEGED_OBJECT_DIMS, PolicyActor, SyncWorld, privileged_state  # noqa: E402
from hiors_common.robot import JOINT_NAMES  # noqa: E402
from hiors_policy.config import make_config  # noqa: E402
from hiors_policy.object_pose import observed_state  # noqa: E402
from hiors_sim.expert import ScriptedExpert  # noqa: E402
from hiors_sim.sim_core import PegInsertionSim, SimConfig  # noqa: E402
from hiors_sim.tasks import task_config  # noqa: E402
from hiors_trainer.core import Trainer, TrainerConfig  # noqa: E402

def collect(task, cams, seeds, sim_overrides, privileged=False, human_overrides=None, estimator=None):
    """Expert episodes (successful ones only) from the simulated human in 'demo' mode, at the
    sim's camera resolution (the processor resizes, as in the graph)."""
    world = SyncWorld(task=task, mode='demo', cameras=cams, sim_overrides=sim_overrides,
                      privileged_state=privileged, object_estimator=estimator,
                      human_overrides=human_overrides or {})
    return [r.episode for r in (world.episode(seed) for seed in seeds) if r.outcome == 'success']


def evaluate(sim, actor, seeds, cams, max_ticks, privileged=False, estimator=None):
    """The policy alone, stepped directly (no human): success, whether the peg was lifted 2 cm,
    and the closest the lifted peg came to the hole axis. The state: joints, + the true object
    poses (privileged) or the estimator's reading of them."""
    results, lifted, best_lateral, fell = [], [], [], []
    for seed in seeds:
        sim.reset(seed)
        actor.reset()
        ok, lift, lat = False, False, 1.0
        z0 = sim.peg_pose()[0][2]
        for _ in range(max_ticks):
            q = sim.joint_positions()
            frames = {}

            def images():
                if not frames:
                    frames.update({c: sim.render(c) for c in cams})
                return frames
            state = (privileged_state(q, sim.task_state()) if privileged
                     else observed_state(q, images, estimator))
            cmd = actor.command(state, images)
            sim.step(cmd)
            peg = sim.peg_pose()[0]
            lift = lift or peg[2] > z0 + 0.02
            if lift:
                lat = min(lat, float(np.linalg.norm(peg[:2] - sim.hole_pose()[0][:2])))
            if sim.success():
                ok = True
                break
        results.append(ok)
        fell.append(not ScriptedExpert.peg_upright(sim.peg_pose()[1]))
        lifted.append(lift)
        if lift:
            best_lateral.append(lat)
    return results, lifted, best_lateral, fell


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--task', default='peg_insert')
    ap.add_argument('--demos', type=int, default=20)
    ap.add_argument('--steps', type=int, default=1500)
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--eval', type=int, default=10)
    ap.add_argument('--preset', default='tiny')
    ap.add_argument('--chunk', type=int, default=0, help='override chunk_size (H)')
    ap.add_argument('--exec', type=int, default=0, help='override n_action_steps (k)')
    ap.add_argument('--image-size', type=int, default=0)
    ap.add_argument('--clearance', type=float, default=0.0, help='override the hole clearance per side (m)')
    ap.add_argument('--patch', type=int, default=0, help='override vision_patch_size')
    ap.add_argument('--vision-tower', default='', help="override vision_tower ('siglip' | 'keypoints')")
    ap.add_argument('--action-space', default='', help="override action_space ('joint' | 'tool')")
    ap.add_argument('--keypoints', type=int, default=0, help='override vision_keypoints')
    ap.add_argument('--vision-width', type=int, default=0, help='override vision_width')
    ap.add_argument('--vision-backbone', default='', help="override vision_backbone ('conv' | 'efficientnet_lite0')")
    ap.add_argument('--backbone-lr-scale', type=float, default=None,
                    help='override vision_backbone_lr_scale (0 = a frozen backbone)')
    ap.add_argument('--ema', type=float, default=0.0, help='EMA decay of the weights (evaluated besides the raw ones)')
    ap.add_argument('--eval-at', default='', help='comma list of extra step counts to evaluate at (EMA if on)')
    ap.add_argument('--chamfer', type=float, default=-1.0, help='override the hole chamfer (m); -1 = the scene default')
    ap.add_argument('--noise-samples', type=int, default=1, help='flow-matching draws per observation and step')
    ap.add_argument('--image-shift', type=int, default=0,
                    help='random-shift augmentation, pixels at the policy image size (TrainerConfig.image_shift_px)')
    ap.add_argument('--privileged', action='store_true',
                    help='upper bound: true peg/hole (x, y, yaw) appended to the state (perfect perception)')
    ap.add_argument('--pose-estimator', default='',
                    help='object-pose estimator file (bench/train_pose_estimator.py): its peg/hole (x, y, yaw) '
                         'appended to the state, in the demos and the evaluation')
    ap.add_argument('--human', nargs='*', default=[], metavar='FIELD=VALUE',
                    help='SimHumanConfig fields of the demonstrator (e.g. approach_funnel_slope=1.5)')
    ap.add_argument('--max-ticks', type=int, default=200)
    ap.add_argument('--lr', type=float, default=0.0)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--json', default='')
    ap.add_argument('--save', default='', help='write the final (EMA if on) policy checkpoint here')
    a = ap.parse_args()
    if a.save:   # now, not after the training: a missing folder must not lose the result
        os.makedirs(os.path.dirname(os.path.abspath(a.save)), exist_ok=True)
    torch.set_num_threads(a.threads)
    # Policy config overrides: command-line option -> PolicyConfig field (0 / '' = the preset's).
    fields = {'chunk': 'chunk_size', 'exec': 'n_action_steps', 'image_size': 'image_size',
              'patch': 'vision_patch_size', 'vision_tower': 'vision_tower', 'keypoints': 'vision_keypoints',
              'vision_width': 'vision_width', 'vision_backbone': 'vision_backbone',
              'backbone_lr_scale': 'vision_backbone_lr_scale', 'action_space': 'action_space'}
    over = {field: getattr(a, opt) for opt, field in fields.items()
            if getattr(a, opt) or (opt == 'backbone_lr_scale' and a.backbone_lr_scale is not None)}
    if a.privileged and a.pose_estimator:
        raise SystemExit('--privileged and --pose-estimator are exclusive')
    estimator = None
    if a.pose_estimator:
        from hiors_policy.object_pose import ObjectPoseEstimator
        estimator = ObjectPoseEstimator.load(a.pose_estimator)
    if a.privileged or estimator:
        over['state_dim'] = len(JOINT_NAMES) + PRIVILEGED_OBJECT_DIMS
    config = make_config(a.preset, **over)
    sim_cfg = SimConfig(**task_config(a.task))
    sim_over = {}
    if a.clearance:
        sim_over['clearance_m'] = a.clearance
    if a.chamfer >= 0:
        sim_over['chamfer_m'] = a.chamfer
    for k, v in sim_over.items():
        setattr(sim_cfg, k, v)
    sim = PegInsertionSim(sim_cfg)
    cams = config.camera_names
    t0 = time.time()
    eps = collect(a.task, cams, range(a.seed * 10000, a.seed * 10000 + a.demos),
                  sim_over, a.privileged, human_overrides(a), estimator)
    t_collect = time.time() - t0
    print(f'{len(eps)}/{a.demos} expert demos, {sum(len(e.state) for e in eps)} steps, {t_collect:.0f} s', flush=True)
    by_id = {e.info.episode_id: e for e in eps}
    cfg = TrainerConfig(episode_dir='', demo_dir='demos', out_dir=f'/tmp/hiors-bc-offline-{os.getpid()}',
                        method='bc', policy_preset=a.preset, batch_size=a.batch_size, lr=a.lr,
                        decay_steps=a.steps, replan_stride=config.n_action_steps, num_threads=a.threads,
                        seed=a.seed, intake_interval_s=1e9, ema_decay=a.ema,
                        noise_samples=a.noise_samples, image_shift_px=a.image_shift)
    tr = Trainer(cfg, loader=lambda info, rate_hz=None: by_id[info.episode_id],
                 lister=lambda root: [e.info for e in eps])
    tr.resume_or_init(config=config)
    tr.ingest()
    t0 = time.time()
    losses = []
    eval_at = sorted({int(x) for x in a.eval_at.split(',') if x} | {a.steps})
    held_out = range(900000 + a.seed * 1000, 900000 + a.seed * 1000 + a.eval)
    base = dict(task=a.task, clearance_mm=sim_cfg.clearance_m * 1000, chamfer_mm=sim_cfg.chamfer_m * 1000,
                demos=len(eps), total_steps=a.steps, chunk=config.chunk_size, exec=config.n_action_steps,
                image_size=config.image_size, patch=config.vision_patch_size, preset=a.preset,
                vision_tower=config.vision_tower, keypoints=config.vision_keypoints,
                vision_width=config.vision_width, vision_backbone=config.vision_backbone,
                action_space=config.action_space,
                backbone_lr_scale=config.vision_backbone_lr_scale, privileged=a.privileged,
                pose_estimator=a.pose_estimator, ema=a.ema,
                noise_samples=a.noise_samples, image_shift=a.image_shift, collect_s=round(t_collect))

    def run_eval(weights, label, on_train):
        from hiors_policy.modeling import Pi0Policy
        policy = Pi0Policy(config)
        policy.load_state_dict(weights)
        actor = PolicyActor(policy, tr.norm_stats, lead_ticks=0, blend_ticks=0)   # this bench's protocol: no latency
        t1 = time.time()
        ok, lifted, lat, fell = evaluate(sim, actor, held_out, cams, a.max_ticks, a.privileged, estimator)
        r = dict(base, steps=tr.step, weights=label, final_loss=float(np.mean(losses[-50:])),
                 success=float(np.mean(ok)), successes=int(sum(ok)), n_eval=len(ok),
                 lifted=float(np.mean(lifted)), tipped=float(np.mean(fell)),
                 median_lateral_mm=round(float(np.median(lat)) * 1000, 1) if lat else None,
                 train_s=round(t_train))
        if on_train:
            ok_train, _, _, _ = evaluate(sim, actor, range(a.seed * 10000, a.seed * 10000 + min(a.eval, a.demos)),
                                         cams, a.max_ticks, a.privileged, estimator)
            r['success_on_train_instances'] = float(np.mean(ok_train))
        r['eval_s'] = round(time.time() - t1)
        print(json.dumps(r), flush=True)
        if a.json:
            with open(a.json, 'a') as f:
                f.write(json.dumps(r) + '\n')
        return r

    t_train = 0.0
    evaluations = []
    for s in range(a.steps):
        t1 = time.time()
        losses.append(tr.train_step()['loss'])
        t_train += time.time() - t1
        if (s + 1) % max(1, a.steps // 10) == 0:
            print(f'step {s + 1}: loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f} s)', flush=True)
        if s + 1 in eval_at and a.eval:          # --eval 0: train and save only
            last = s + 1 == a.steps
            evaluations.append(run_eval(tr.model_state(), 'ema' if a.ema else 'raw', on_train=last))
            if a.ema and last:
                evaluations.append(run_eval(tr.policy.state_dict(), 'raw', on_train=False))
    if a.save:
        # The shipped base policy: checkpoint + a sidecar JSON with its sha256 (checked at load by
        # the main job), the command that made it and its offline figures.
        import sys
        from hiors_policy.checkpoint import save_checkpoint
        from hiors_trainer.core import FullWeights
        info = save_checkpoint(a.save, FullWeights(tr.model_state()), config, tr.norm_stats, 'base')
        side = os.path.splitext(a.save)[0] + '.json'
        atomic_write_json(side, {'sha256': info['sha256'], 'size': info['size'], 'created': time.strftime('%Y-%m-%d'),
                                 'command': 'MUJOCO_GL=egl .venv/bin/python ' + ' '.join(sys.argv),
                                 'evaluations': evaluations}, indent=1, sort_keys=False)
        print(f'saved {a.save} and {side}', flush=True)


if __name__ == '__main__':
    main()
