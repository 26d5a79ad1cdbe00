"""Train the object-pose estimator (hiors_policy.object_pose) on labelled simulated frames, and
measure it on held-out task instances.

Frames come from the simulated human's scripted demonstrations (peg on the table, in the hand,
in the hole) and, with --rollouts, from episodes a privileged-state policy (--rollout-base)
drives, corrected by the simulated human ('intervene') or alone ('label_only'): the off-nominal
states online training and evaluations meet (pegs tipped, hands astray), where an estimator that
saw demonstrations only is off by a centimetre (BENCHMARKS.md, session 37). Each frame is labelled
with the true peg and hole (x, y, yaw). Training instances 50000.. and 70000.. (held-out
rollouts 80000..) are disjoint from the demos' (0..) and evaluations' (900000..).

  MUJOCO_GL=egl .venv/bin/python bench/train_pose_estimator.py --demos 800 --rollouts 240 \\
      --rollout-modes intervene,label_only --rollout-base BASE --held-out-rollouts 10 \\
      --save runs/pose/estimator.safetensors
"""
import argparse
import json
import os
import sys
import time

from hiors_common.ros_env import use_local_ros_network

use_local_ros_network()          # no DDS is used here; set anyway, like every bench
os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hiors.sync_loop import PRIVILEGED_OBJECT_DIMS, PolicyActor, SyncWorld  # noqa: E402
from hiors_common.robot import JOINT_NAMES  # noqa: E402
from hiors_policy.object_pose import OBJECT_POSE_NAMES, ObjectPoseEstimator, PoseEstimatorConfig, fit_pose_estimator  # noqa: E402
from hiors_policy.processing import resize_with_pad  # noqa: E402

J = len(JOINT_NAMES)


def labelled_frames(world, seeds, size, per_episode, actor=None, log_every=50):
    """(frames (N, n_cam, size, size, 3) uint8, joints (N, J), poses (N, 6), episode lengths):
    `per_episode` random frames of each episode (0 = all)."""
    frames, joints, poses, lengths = [], [], [], []
    t0 = time.time()
    for n, seed in enumerate(seeds):
        ep = world.episode(int(seed), actor).episode
        if ep is None:
            continue
        keep = np.arange(len(ep.state))
        if per_episode:
            keep = np.sort(np.random.default_rng(int(seed)).choice(keep, min(per_episode, len(keep)), replace=False))
        frames.append(np.stack([np.stack([resize_with_pad(ep.images[c][i], size) for i in keep])
                                for c in world.cameras], axis=1))
        joints.append(ep.state[keep, :J])
        poses.append(ep.state[keep, J:J + PRIVILEGED_OBJECT_DIMS])
        lengths.append(len(keep))
        if (n + 1) % log_every == 0:
            print(f'  {n + 1}/{len(seeds)} episodes, {sum(lengths)} frames ({time.time() - t0:.0f} s)', flush=True)
    return np.concatenate(frames), np.concatenate(joints), np.concatenate(poses), lengths


def errors(model, frames, joints, poses, batch=128):
    """Absolute error per frame and pose dimension (m, rad)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = model.image_batch(frames[i:i + batch])
            out.append(model(x, torch.from_numpy(joints[i:i + batch].astype(np.float32))).numpy())
    return np.abs(np.concatenate(out) - poses)


def summary(err) -> dict:
    """Mean and 95th-percentile error: positions in mm (x-y distance), yaws in degrees."""
    out = {}
    for obj, i in (('peg', 0), ('hole', 3)):
        dist = np.linalg.norm(err[:, i:i + 2], axis=1) * 1000
        out[f'{obj}_xy_mm_mean'] = round(float(dist.mean()), 2)
        out[f'{obj}_xy_mm_p95'] = round(float(np.percentile(dist, 95)), 2)
        out[f'{obj}_yaw_deg_mean'] = round(float(np.degrees(err[:, i + 2]).mean()), 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--task', default='peg_insert_narrow')
    ap.add_argument('--demos', type=int, default=800, help='demonstration episodes to label frames from')
    ap.add_argument('--rollouts', type=int, default=0,
                    help='episodes driven by --rollout-base, split over --rollout-modes (off-nominal states)')
    ap.add_argument('--rollout-base', default='', help='a policy checkpoint trained with --privileged state')
    ap.add_argument('--rollout-modes', default='intervene',
                    help="comma list of SimHuman modes the rollouts are split over: 'intervene' (the human "
                         "corrects the policy, as online) and/or 'label_only' (the policy alone, as in "
                         "evaluations: its failures, pegs tipped and hands astray, are where it needs the poses)")
    ap.add_argument('--held-out-rollouts', type=int, default=0,
                    help='held-out rollouts per mode (instances 80000..), every frame measured: the error on '
                         "the policy's own states, which demonstrations do not show")
    ap.add_argument('--frames-per-episode', type=int, default=12, help='random frames kept per episode (0 = all)')
    ap.add_argument('--held-out', type=int, default=20, help='held-out demonstration episodes, every frame measured')
    ap.add_argument('--steps', type=int, default=4000)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1e-3)
    ap.add_argument('--keypoints', type=int, default=PoseEstimatorConfig.keypoints)
    ap.add_argument('--image-size', type=int, default=PoseEstimatorConfig.image_size)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--evaluate', default='',
                    help='measure this estimator file on the held-out sets instead of training one (no --save)')
    ap.add_argument('--save', default='', help='estimator file (.safetensors); a .json sidecar gets the figures')
    a = ap.parse_args()
    if bool(a.evaluate) == bool(a.save):
        raise SystemExit('give --save (train one) or --evaluate (measure one)')
    if a.evaluate:
        a.demos = a.rollouts = 0
    else:
        # Now, not after the hour of collecting and training: a missing folder must not lose the result.
        os.makedirs(os.path.dirname(os.path.abspath(a.save)), exist_ok=True)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    world = SyncWorld(task=a.task, mode='demo', privileged_state=True)
    train_sets = [labelled_frames(world, range(50000, 50000 + a.demos), a.image_size, a.frames_per_episode)
                  ] if a.demos else []
    rollout_sets = []
    if a.rollouts or a.held_out_rollouts:
        from hiors_policy.checkpoint import load_checkpoint
        policy, pconfig, norm_stats, _ = load_checkpoint(a.rollout_base)
        if pconfig.state_dim != J + PRIVILEGED_OBJECT_DIMS:
            raise SystemExit(f'--rollout-base {a.rollout_base}: state_dim {pconfig.state_dim}, not a privileged policy')
        actor = PolicyActor(policy, norm_stats)
        modes = a.rollout_modes.split(',')
        for k, mode in enumerate(modes):
            rollout_world = SyncWorld(task=a.task, mode=mode, privileged_state=True, cameras=pconfig.camera_names)
            first = 70000 + k * 5000
            n = a.rollouts // len(modes) + (k < a.rollouts % len(modes))
            if n:
                train_sets.append(labelled_frames(rollout_world, range(first, first + n), a.image_size,
                                                  a.frames_per_episode, actor))
            if a.held_out_rollouts:
                first = 80000 + k * 5000
                rollout_sets.append((mode, labelled_frames(rollout_world, range(first, first + a.held_out_rollouts),
                                                           a.image_size, 0, actor)))
    frames, joints, poses = (np.concatenate([t[i] for t in train_sets]) if train_sets else np.zeros(0)
                             for i in range(3))
    test = labelled_frames(world, range(60000, 60000 + a.held_out), a.image_size, 0)
    t_collect = time.time() - t0
    print(f'{len(frames)} training frames, {len(test[0])} held-out ({t_collect:.0f} s)', flush=True)

    def log(step, loss, secs, model):
        print(f'step {step}: loss {loss:.4f}, held-out {summary(errors(model, *test[:3]))} ({secs:.0f} s)', flush=True)
    cfg = PoseEstimatorConfig(image_size=a.image_size, keypoints=a.keypoints)
    t1 = time.time()
    if a.evaluate:
        model = ObjectPoseEstimator.load(a.evaluate)
        log('(loaded)', float('nan'), 0, model)
    else:
        model = fit_pose_estimator(frames, joints, poses, cfg, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                                   seed=a.seed, log=log)
    t_train = time.time() - t1
    for mode, held in rollout_sets:
        print(f'held-out rollouts ({mode}, {len(held[0])} frames): {summary(errors(model, *held[:3]))}', flush=True)
    res = dict(summary(errors(model, *test[:3])), task=a.task, demos=a.demos, rollouts=a.rollouts,
               rollout_modes=a.rollout_modes if a.rollouts else '',
               **{f'rollouts_{mode}': dict(summary(errors(model, *held[:3])), frames=len(held[0]),
                                           episodes=a.held_out_rollouts)
                  for mode, held in rollout_sets},
               training_frames=len(frames), held_out_frames=len(test[0]), steps=a.steps, batch_size=a.batch_size,
               image_size=a.image_size, keypoints=a.keypoints, collect_s=round(t_collect), train_s=round(t_train),
               outputs=list(OBJECT_POSE_NAMES), created=time.strftime('%Y-%m-%d'),
               command='MUJOCO_GL=egl .venv/bin/python ' + ' '.join(sys.argv))
    print(json.dumps(res), flush=True)
    if a.evaluate:
        return
    model.save(a.save)
    # The sidecar: sha256 (checked where a committed estimator is loaded), command and figures.
    from hiors_common.atomic import atomic_write_json
    from hiors_common.signing import sha256_file
    atomic_write_json(os.path.splitext(a.save)[0] + '.json',
                      dict(sha256=sha256_file(a.save), size=os.path.getsize(a.save), **res), indent=1, sort_keys=False)


if __name__ == '__main__':
    main()
