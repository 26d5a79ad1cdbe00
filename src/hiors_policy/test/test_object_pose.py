"""The object-pose estimator: fitted on real simulated frames labelled with the true poses, saved
and loaded as safetensors, and read by the synchronous loop into the policy's state."""
import numpy as np
import pytest
import torch

from hiors.sync_loop import EpisodeStore, SyncWorld
from hiors_policy.config import make_config
from hiors_policy.object_pose import OBJECT_POSE_NAMES, ObjectPoseEstimator, PoseEstimatorConfig, fit_pose_estimator
from hiors_policy.processing import resize_with_pad
from hiors_trainer.core import Trainer, TrainerConfig


def test_fit_save_load_and_the_loop_reads_it(tmp_path):
    torch.set_num_threads(1)
    cfg = PoseEstimatorConfig(image_size=48, keypoints=4, conv_width=8, token_width=8, hidden=32)
    world = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64, privileged_state=True)
    eps = [world.episode(seed).episode for seed in (1, 2)]
    frames = np.concatenate([np.stack([np.stack([resize_with_pad(f, 48) for f in e.images[c]])
                                       for c in cfg.camera_names], axis=1) for e in eps])
    states = np.concatenate([e.state for e in eps])
    joints, poses = states[:, :7], states[:, 7:]
    losses = []
    model = fit_pose_estimator(frames, joints, poses, cfg, steps=60, batch_size=8, lr=3e-3,
                               log=lambda step, loss, secs, m: losses.append(loss), log_every=10)
    assert losses[-1] < losses[0]                        # it learns (normalised smooth-L1)
    assert model.config.pose_mean == pytest.approx(poses.mean(0).tolist())

    path = tmp_path / 'est.safetensors'
    model.save(path)
    loaded = ObjectPoseEstimator.load(path)
    ep = eps[0]
    images = {c: ep.images[c][5] for c in cfg.camera_names}
    est = loaded.estimate(images, ep.state[5, :7])
    assert est.shape == (len(OBJECT_POSE_NAMES),) and np.allclose(est, model.estimate(images, ep.state[5, :7]))
    with pytest.raises(ValueError, match='missing'):
        loaded.estimate({'front': images['front']}, ep.state[5, :7])

    # Not an estimator file: a clear error, nothing unpickled.
    from safetensors.torch import save_file
    save_file({'w': torch.zeros(2)}, str(tmp_path / 'other.safetensors'), metadata={'format': 'something-else'})
    with pytest.raises(ValueError, match='not an object-pose estimator'):
        ObjectPoseEstimator.load(tmp_path / 'other.safetensors')

    # The loop puts joints + the estimate in the state it records (and hands the policy).
    est_world = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64, object_estimator=loaded)
    rec = est_world.episode(3).episode
    assert rec.state.shape[1] == 7 + len(OBJECT_POSE_NAMES)
    frame = {c: rec.images[c][0] for c in cfg.camera_names}
    assert np.allclose(rec.state[0, 7:], loaded.estimate(frame, rec.state[0, :7]), atol=1e-5)
    with pytest.raises(ValueError, match='exclusive'):
        SyncWorld(task='peg_insert_narrow', privileged_state=True, object_estimator=loaded)
    # record_true_poses (upper-bound study): the same episode, recorded with the true poses.
    true_rec = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64, object_estimator=loaded,
                         record_true_poses=True).episode(3).episode
    truth = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64, privileged_state=True).episode(3).episode
    assert np.allclose(true_rec.state, truth.state, atol=1e-6)

    # The trainer reads robot episodes (joints only, as bags hold them) and appends the estimator's
    # reading of each recorded frame: the numbers the loop above handed the policy.
    joint_world = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64)
    store = EpisodeStore()
    store.add('online', joint_world.episode(3).episode)
    cfg13 = make_config('tiny', image_size=48, state_dim=13)
    tcfg = dict(episode_dir='online', batch_size=4, intake_interval_s=1e9, object_pose_estimator=str(path))
    tr = Trainer(TrainerConfig(out_dir=str(tmp_path / 't13'), **tcfg), loader=store.loader, lister=store.lister)
    tr.resume_or_init(config=cfg13)
    assert tr.ingest() == 1
    (stored,) = tr.store.values()
    assert stored.state.shape == rec.state.shape and np.allclose(stored.state, rec.state, atol=1e-4)
    assert np.isfinite(tr.train_step()['loss'])
    with pytest.raises(ValueError, match='state_dim 7'):
        Trainer(TrainerConfig(out_dir=str(tmp_path / 't7'), **tcfg), loader=store.loader,
                lister=store.lister).resume_or_init(config=make_config('tiny', image_size=48))

    # Training noise on the object poses only (object_pose_noise_*): the joints are left as measured.
    noisy = Trainer(TrainerConfig(out_dir=str(tmp_path / 'tn'), object_pose_noise_m=0.002,
                                  object_pose_noise_rad=0.03, **tcfg), loader=store.loader, lister=store.lister)
    noisy.resume_or_init(config=cfg13)
    noisy.ingest()
    noisy.processor = tr.processor                       # the same normalisation as the clean trainer
    draws = tr._draw(4)
    clean_state = tr.make_batch(draws)[0]['state'][:, :13]
    noisy_state = noisy.make_batch(draws)[0]['state'][:, :13]
    assert torch.equal(clean_state[:, :7], noisy_state[:, :7])
    assert (clean_state[:, 7:] != noisy_state[:, 7:]).all()
    with pytest.raises(ValueError, match='holds no object poses'):
        Trainer(TrainerConfig(out_dir=str(tmp_path / 'tn7'), object_pose_noise_m=0.002, episode_dir='online'),
                loader=store.loader, lister=store.lister).resume_or_init(config=make_config('tiny', image_size=48))
