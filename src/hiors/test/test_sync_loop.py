"""The synchronous loop the learning benchmark runs: real sim, simulated human, policy and trainer
cores stepped in one process; episodes come out as the dataset library's Episode objects."""
import numpy as np
import torch

from hiors.sync_loop import EpisodeStore, PolicyActor, SyncWorld, policy_copy
from hiors_policy.config import make_config
from hiors_policy.modeling import Pi0Policy
from hiors_policy.processing import NormStats
from hiors_trainer.core import Trainer, TrainerConfig


def test_demo_and_policy_episodes_feed_the_trainer(tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = make_config('tiny', image_size=64, vision_patch_size=32)
    demo = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64)
    r = demo.episode(seed=7)
    ep = r.episode
    assert r.outcome == 'success' and ep.info.outcome == 'success'
    T = len(ep.state)
    assert 20 < T < 150 and ep.action.shape == (T, 7) and ep.intervention.all()
    assert ep.images['front'].shape == (T, 64, 64, 3) and ep.images['wrist'].dtype == np.uint8
    # The recorded action at step k is the command sent after observing state k: the arm follows it.
    assert np.abs(ep.state[1:, :6] - ep.action[:-1, :6]).max() < 0.2

    # A random-init policy alone: it fails; every step is its own (no takeover in label_only).
    actor = PolicyActor(Pi0Policy(config), NormStats.from_arrays(ep.state, ep.action))
    alone = SyncWorld(task='peg_insert_narrow', mode='label_only', episode_timeout_s=2.0, image_size=64)
    f = alone.episode(seed=8, actor=actor)
    assert f.outcome == 'failure' and not f.episode.intervention.any()
    assert np.all(np.isfinite(f.episode.action)) and len(f.episode.state) >= 5   # may knock the peg over early

    # The trainer reads both through its lister/loader hooks: the success is accepted, the failure
    # rejected by the threshold, and a train step runs on the accepted samples.
    store = EpisodeStore()
    store.add('online', ep)
    store.add('online', f.episode)
    tr = Trainer(TrainerConfig(episode_dir='online', out_dir=str(tmp_path), batch_size=4, intake_interval_s=1e9),
                 loader=store.loader, lister=store.lister)
    tr.resume_or_init(config=config)
    assert tr.ingest() == 2
    rep = tr.report()
    assert rep['accepted_episodes'] == 1 and rep['rejected_episodes'] == {'below_threshold': 1}
    assert np.isfinite(tr.train_step()['loss'])
    actor.load(tr.model_state(), tr.norm_stats)                 # the hot swap of the benchmark
    assert actor.executor.chunk is None and actor.executor.needs_request(actor.tick + 1)


def test_tool_space_policy_trains_on_joint_episodes_and_commands_joints(tmp_path):
    """action_space 'tool': the recorded (joint) episodes are encoded to tool poses as the trainer
    loads them; the actor encodes its observations and sends joint targets (IK) to the arm."""
    from hiors_sim.kinematics import ArmKinematics
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = make_config('tiny', image_size=64, action_space='tool')
    ep = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64).episode(seed=7).episode
    store = EpisodeStore()
    store.add('online', ep)
    tr = Trainer(TrainerConfig(episode_dir='online', out_dir=str(tmp_path), batch_size=4, intake_interval_s=1e9),
                 loader=store.loader, lister=store.lister)
    tr.resume_or_init(config=config)
    assert tr.ingest() == 1
    kept = next(iter(tr.intake.store.values()))
    kin = ArmKinematics()
    assert np.allclose(kept.state[:, :3], [kin.fk(q[:6])[0] for q in ep.state], atol=1e-5)
    assert np.allclose(kept.action[:, :3], [kin.fk(q[:6])[0] for q in ep.action], atol=1e-5)
    assert np.allclose(kept.action[:, 6], ep.action[:, 6])
    assert np.isfinite(tr.train_step()['loss'])
    assert np.abs(tr.norm_stats.action_mean[:3] - kept.action[:, :3].mean(0)).max() < 1e-4   # metres, not rad
    actor = PolicyActor(Pi0Policy(config), tr.norm_stats)
    actor.load(*policy_copy(tr))
    f = SyncWorld(task='peg_insert_narrow', mode='label_only', episode_timeout_s=1.5, image_size=64).episode(
        seed=8, actor=actor)
    assert len(f.episode.action) >= 5 and np.all(np.isfinite(f.episode.action))
    # What reached the arm are joint targets near the arm, not poses read as joints.
    assert np.abs(f.episode.action[:, :6] - f.episode.state[:, :6]).max() < 0.5


class _Sweeper:
    """A bad 'policy': sweeps the closed hand through the standing peg at its mid height."""

    def __init__(self, world):
        self.world, self.t = world, 0

    def reset(self):
        pass

    def command(self, q, images):
        from hiors_sim.kinematics import quat_from_yaw_down
        peg = self.world.sim.task_state()['peg_pos']
        self.t += 1
        goal = peg + np.array([0.0, -0.10 + 0.01 * self.t, 0.01])
        arm = self.world.human.expert.kin.ik(goal, quat_from_yaw_down(0.0), np.asarray(q)[:6])
        return np.concatenate([arm, [0.0]])


def test_knocked_over_peg_is_labelled_with_the_phase_and_driver():
    world = SyncWorld(task='peg_insert_narrow', mode='label_only', episode_timeout_s=6.0, image_size=64)
    r = world.episode(seed=3, actor=_Sweeper(world), record=False)
    assert r.outcome == 'failure' and r.end_phase == 'fallen'
    assert r.fell_under == 'policy' and r.fell_in in ('approach', 'retreat', 'descend')
    ok = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64).episode(seed=3, record=False)
    assert ok.outcome == 'success' and ok.fell_in == ''


def test_command_delay_reaches_the_arm_late():
    still, late = (SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64, command_delay_ticks=d)
                   for d in (0, 2))
    a, b = still.episode(seed=5, record=True).episode, late.episode(seed=5, record=True).episode
    def first_move(ep):
        return int(np.argmax(np.abs(ep.state[:, :6] - ep.state[0, :6]).max(axis=1) > 1e-3))
    assert first_move(a) >= 1
    assert first_move(b) == first_move(a) + 2, 'the same commands reach the arm two ticks later'
    assert late.episode(seed=6, record=False).outcome == 'success'   # the expert copes with 0.2 s


def test_evaluation_renders_only_on_planning_ticks():
    """Unrecorded policy episodes render the cameras only when a chunk is planned (about every
    k-th tick); recording still stores every tick's frames, and the arm's path is the same."""
    torch.set_num_threads(1)
    config = make_config('tiny', image_size=64, vision_patch_size=32)
    policy = Pi0Policy(config)
    demo = SyncWorld(task='peg_insert_narrow', mode='demo', image_size=64).episode(seed=7).episode
    plans, sample = [], policy.sample_actions
    policy.sample_actions = lambda *a, **k: plans.append(1) or sample(*a, **k)
    paths = []
    for record in (False, True):
        world = SyncWorld(task='peg_insert_narrow', mode='label_only', episode_timeout_s=2.0, image_size=64)
        renders, path = [], []
        render, step = world.sim.render, world.sim.step
        world.sim.render = lambda cam: renders.append(cam) or render(cam)
        world.sim.step = lambda cmd=None: path.append(np.array(cmd, float)) or step(cmd)
        plans.clear()
        torch.manual_seed(3)
        r = world.episode(seed=8, actor=PolicyActor(policy, NormStats.from_arrays(demo.state, demo.action)),
                          record=record)
        paths.append(np.array(path))
        if not record:
            assert 0 < len(plans) < r.ticks * 0.75 and len(renders) == 2 * len(plans)
        else:
            T = len(r.episode.state)
            # + the labelling tick, whose observation the policy saw but nobody recorded
            assert r.episode.images['front'].shape[0] == T and 2 * T <= len(renders) <= 2 * (T + 1)
    np.testing.assert_allclose(paths[0], paths[1])
