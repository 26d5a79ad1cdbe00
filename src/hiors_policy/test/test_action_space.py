"""The tool-pose action space: joints <-> tool pose on the robot's own kinematics (hiors_sim MJCF),
through the processor (observations in, joint targets out) and the trainer (episodes encoded once)."""
import numpy as np
import pytest
import torch

from hiors_common.robot import HOME_Q
from hiors_policy.action_space import ToolSpace, make_space
from hiors_policy.config import PolicyConfig, make_config
from hiors_policy.processing import NormStats, PolicyProcessor
from hiors_sim.kinematics import ArmKinematics, quat_from_yaw_down, tool_yaw


def _nearby_joints(n, seed=0):
    rng = np.random.default_rng(seed)
    q = np.tile(np.asarray(HOME_Q, float), (n, 1))
    q[:, :6] += rng.uniform(-0.25, 0.25, (n, 6))
    q[:, 6] = rng.uniform(0.0, 0.035, n)
    return q


def test_encode_is_forward_kinematics_and_keeps_object_columns():
    kin = ArmKinematics()
    space = ToolSpace(kin)
    q = _nearby_joints(5)
    objects = np.arange(30, dtype=float).reshape(5, 6)
    enc = space.encode(np.concatenate([q, objects], axis=1))
    assert enc.shape == (5, 13) and enc.dtype == np.float32
    for row, qi in zip(enc, q):
        pos, quat = kin.fk(qi[:6])
        assert np.allclose(row[:3], pos, atol=1e-6)
        assert np.isclose(np.mod(tool_yaw(quat), 2 * np.pi), row[3], atol=1e-5)
        assert row[6] == pytest.approx(qi[6])
    assert np.array_equal(enc[:, 7:], objects)
    # The home pose points straight down at yaw pi: no wrap in [0, 2 pi), no tilt.
    home = space.encode(np.asarray(HOME_Q)[None])[0]
    assert abs(home[3] - np.pi) < 0.05 and np.abs(home[4:6]).max() < 0.01


def test_decode_reaches_the_encoded_poses_step_by_step():
    kin = ArmKinematics()
    space = ToolSpace(kin)
    q0 = np.asarray(HOME_Q, float)
    path = q0 + np.linspace(0, 1, 10)[:, None] * np.array([0.2, 0.15, -0.2, 0.1, 0.15, 0.3, -0.03])
    targets = space.encode(path)
    joints = space.decode(targets, q0)
    assert joints.shape == (10, 7) and np.all(np.isfinite(joints))
    back = space.encode(joints)
    assert np.abs(back[:, :3] - targets[:, :3]).max() < 1e-3           # within a millimetre
    assert np.abs(back[:, 3:6] - targets[:, 3:6]).max() < 1e-2
    assert np.allclose(joints[:, 6], targets[:, 6])


def test_decode_refuses_non_finite_and_jumping_chunks():
    space = ToolSpace()
    q0 = np.asarray(HOME_Q, float)
    good = space.encode(np.tile(q0, (4, 1)))
    bad = good.copy()
    bad[2, 0] = np.nan
    assert np.isnan(space.decode(bad, q0)).all()
    far = good.copy()
    far[1, :3] = [-0.4, 0.3, 0.1]                # the other side of the robot within one step
    assert np.isnan(space.decode(far, q0)).all()


def test_config_validates_the_space_and_old_checkpoints_are_joint_space():
    assert PolicyConfig.from_dict({}).action_space == 'joint'
    assert make_space('joint') is None and isinstance(make_space('tool'), ToolSpace)
    with pytest.raises(ValueError, match='action_space'):
        make_config('tiny', action_space='cartesian')
    with pytest.raises(ValueError, match="'tool' needs"):
        make_config('tiny', action_space='tool', action_dim=6)


def test_processor_encodes_observations_and_returns_joint_targets():
    torch.manual_seed(0)
    config = make_config('tiny', action_space='tool', state_dim=13, image_size=32)
    space = ToolSpace()
    q = np.asarray(HOME_Q, float)
    state = np.concatenate([q, np.zeros(6)])
    pose = space.encode(q[None])[0]
    # Norm stats centred on the current pose with a tiny spread: any model output decodes to
    # targets within millimetres of where the arm is.
    stats = NormStats(np.zeros(13), np.ones(13), pose.astype(np.float64), np.full(7, 1e-4))
    proc = PolicyProcessor(config, stats)
    batch = proc.prepare_observation({'front': np.zeros((32, 32, 3), np.uint8)}, state, 'insert the peg')
    assert torch.allclose(batch['state'][0, :3], torch.from_numpy(pose[:3]).float())
    out = torch.randn(config.chunk_size, config.max_action_dim)
    targets = proc.joint_targets(out, state)
    assert targets.shape == (config.chunk_size, 7) and np.all(np.isfinite(targets))
    assert np.abs(space.encode(targets)[:, :3] - pose[:3]).max() < 2e-3
    joint_proc = PolicyProcessor(make_config('tiny', image_size=32), NormStats.identity())
    assert np.array_equal(joint_proc.joint_targets(out, q), joint_proc.unnormalize_actions(out))


def test_quat_from_tool_axes_matches_the_down_pointing_tool():
    from hiors_sim.kinematics import quat_from_tool_axes
    for yaw in (0.0, 1.0, np.pi, 5.0):
        a, b = quat_from_tool_axes(yaw), quat_from_yaw_down(yaw)
        assert min(np.abs(a - b).max(), np.abs(a + b).max()) < 1e-9
