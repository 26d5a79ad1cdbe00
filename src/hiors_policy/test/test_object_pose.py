"""The object-pose estimator: fitted on real simulated frames labelled with the true poses, saved
and loaded as safetensors, and read by the synchronous loop into the policy's state."""
import numpy as np
import pytest
import torch

from hiors.sync_loop import SyncWorld
from hiors_policy.object_pose import OBJECT_POSE_NAMES, ObjectPoseEstimator, PoseEstimatorConfig, fit_pose_estimator
from hiors_policy.processing import resize_with_pad


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
