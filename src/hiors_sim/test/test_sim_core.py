import numpy as np
import pytest

from hiors_sim.expert import ExpertConfig, ScriptedExpert, run_expert, wrap_quarter
from hiors_sim.kinematics import ArmKinematics, quat_from_yaw_down, tool_yaw
from hiors_sim.scene import HOME_Q, JOINT_NAMES
from hiors_sim.sim_core import PegInsertionSim, SimConfig
from hiors_sim.tasks import task_config


@pytest.fixture(scope='module')
def sim():
    s = PegInsertionSim(SimConfig(camera_width=96, camera_height=96))
    yield s
    s.close()


def test_reset_is_seeded_and_randomised(sim):
    sim.reset(1)
    a = sim.task_state()
    sim.reset(1)
    b = sim.task_state()
    sim.reset(2)
    c = sim.task_state()
    np.testing.assert_allclose(a['peg_pos'], b['peg_pos'])
    np.testing.assert_allclose(a['hole_pos'], b['hole_pos'])
    assert np.linalg.norm(a['peg_pos'][:2] - c['peg_pos'][:2]) > 1e-3
    assert np.linalg.norm(a['hole_pos'][:2] - c['hole_pos'][:2]) > 1e-3
    np.testing.assert_allclose(sim.joint_positions(), HOME_Q, atol=1e-3)
    assert not sim.success()


def test_commands_move_joints_clip_and_reject_nan(sim):
    sim.reset(0)
    target = np.array(HOME_Q)
    target[0] += 0.3
    target[6] = 0.0
    for _ in range(10):
        sim.step(target)
    q = sim.joint_positions()
    assert abs(q[0] - target[0]) < 0.02 and q[6] < 0.005
    bad = sim.bad_commands
    assert not sim.set_command([np.nan] * 7)
    assert not sim.set_command([0.0] * 6)
    assert sim.bad_commands == bad + 2
    np.testing.assert_allclose(sim.target, target)     # last valid target held
    sim.set_command([10.0] * 7)
    assert sim.target[0] == pytest.approx(3.05) and sim.target[6] == pytest.approx(0.04)


def test_command_timing_counts_ticks_without_a_command_and_overwritten_ones(sim):
    sim.reset(0)
    missed, overwritten = sim.ticks_without_command, sim.overwritten_commands
    sim.step(HOME_Q)                       # one command per tick: the lock-step case
    sim.step()                             # no new command: the last target is held
    sim.set_command(HOME_Q)
    sim.set_command(HOME_Q)                # replaces the first before any tick used it
    sim.step()
    assert (sim.ticks_without_command - missed, sim.overwritten_commands - overwritten) == (1, 1)


def test_velocity_limits_hold_on_every_command_input(sim):
    """A command that bypasses the mux (anyone can publish on the controller's topic) cannot
    teleport the arm: the actuators approach it at JOINT_VELOCITY_LIMITS at most."""
    from hiors_sim.scene import JOINT_VELOCITY_LIMITS
    sim.reset(0)
    far = np.array(HOME_Q)
    far[0] += 2.0
    limited = sim.velocity_limited
    prev = sim.ctrl.copy()
    for _ in range(3):
        sim.step(far)
        assert np.all(np.abs(sim.ctrl - prev) <= np.array(JOINT_VELOCITY_LIMITS) / sim.config.control_rate_hz + 1e-9)
        prev = sim.ctrl.copy()
    assert sim.ctrl[0] == pytest.approx(HOME_Q[0] + 3 * JOINT_VELOCITY_LIMITS[0] / sim.config.control_rate_hz)
    assert sim.velocity_limited == limited + 3
    assert abs(sim.joint_positions()[0] - HOME_Q[0]) < 1.0, 'the arm moved at the limited rate, not 2 rad at once'


def test_cameras_render_distinct_views(sim):
    sim.reset(0)
    sim.step()
    front, wrist = sim.render('front'), sim.render('wrist')
    assert front.shape == wrist.shape == (96, 96, 3) and front.dtype == np.uint8
    assert front.std() > 10 and wrist.std() > 5 and np.abs(front.astype(int) - wrist).mean() > 10


def test_kinematics_round_trip():
    kin = ArmKinematics()
    pos, quat = kin.fk(HOME_Q[:6])
    q = kin.ik(pos, quat, HOME_Q[:6])
    np.testing.assert_allclose(kin.fk(q)[0], pos, atol=1e-4)
    for target, yaw in [((0.45, -0.12, 0.10), 0.4), ((0.40, 0.15, 0.06), -0.5)]:
        q = kin.ik(target, quat_from_yaw_down(yaw), HOME_Q[:6])
        p2, q2 = kin.fk(q)
        np.testing.assert_allclose(p2, target, atol=5e-4)
        assert abs(wrap_quarter(tool_yaw(q2) - yaw)) < 1e-2


@pytest.mark.parametrize('funnel_slope', [0.0, 1.5])
def test_expert_solves_seeded_episodes(sim, funnel_slope):
    expert = ScriptedExpert(ExpertConfig(funnel_slope=funnel_slope))
    wins = 0
    low_while_off_centre = 0     # ticks with the hand under the 6 cm approach height, 0.5-2 cm off the peg
    for seed in range(6):
        sim.reset(100 + seed)
        expert.reset()
        for _ in range(200):
            ts = sim.task_state()
            sim.step(expert.act(sim.joint_positions(), ts['peg_pos'], ts['peg_quat'], ts['hole_pos'],
                                ts['hole_quat']))
            if expert.phase == 'approach':
                tcp = expert.kin.fk(sim.joint_positions()[:6])[0]
                lateral = np.linalg.norm(ts['peg_pos'][:2] - tcp[:2])
                height = tcp[2] - ts['peg_pos'][2] - expert.config.grasp_offset_m
                low_while_off_centre += bool(0.005 < lateral < 0.02 and height < 0.05)
            if sim.success():
                break
        wins += sim.success()
    assert wins == 6
    # The funnel comes down while still centring; align-then-drop stays at the approach height.
    assert (low_while_off_centre > 0) == (funnel_slope > 0)


def test_expert_recovers_after_a_bad_policy_moved_the_arm(sim):
    expert = ScriptedExpert()
    sim.reset(7)
    expert.reset()
    # A "policy" swings the arm away, then the expert takes over from that state.
    q = sim.joint_positions()
    q[0] += 0.5
    q[1] -= 0.3
    for _ in range(10):
        sim.step(q)
    for _ in range(200):
        ts = sim.task_state()
        sim.step(expert.act(sim.joint_positions(), *ts.values()))
        if sim.success():
            break
    assert sim.success()


def test_joint_names_order():
    assert JOINT_NAMES == ('joint1', 'joint2', 'joint3', 'joint4', 'joint5', 'joint6', 'gripper')


def test_named_tasks_set_randomisation_and_clearance():
    from hiors_sim.tasks import TASKS, task_config
    assert set(TASKS) >= {'peg_insert', 'peg_insert_narrow'}
    with pytest.raises(ValueError, match='unknown task'):
        task_config('peg_in_a_haystack')
    cfg = SimConfig(camera_width=64, camera_height=64, **task_config('peg_insert_narrow'))
    narrow = PegInsertionSim(cfg)
    try:
        from hiors_sim.scene import PEG_HALF
        wall = narrow.model.geom('wall_px')
        inner = wall.pos[0] - wall.size[0]                  # hole half-width
        assert inner - PEG_HALF == pytest.approx(0.003)
        for seed in range(20):
            narrow.reset(seed)
            s = narrow.task_state()
            assert cfg.peg_x[0] <= s['peg_pos'][0] <= cfg.peg_x[1]
            assert cfg.peg_y[0] <= s['peg_pos'][1] <= cfg.peg_y[1] + 1e-3
            assert cfg.hole_x[0] <= s['hole_pos'][0] <= cfg.hole_x[1]
            assert cfg.hole_y[0] <= s['hole_pos'][1] <= cfg.hole_y[1]
        # The expert still inserts the peg with the wider clearance.
        expert = ScriptedExpert()
        narrow.reset(3)
        for _ in range(150):
            ts = narrow.task_state()
            narrow.step(expert.act(narrow.joint_positions(), ts['peg_pos'], ts['peg_quat'],
                                   ts['hole_pos'], ts['hole_quat']))
            if narrow.success():
                break
        assert narrow.success()
    finally:
        narrow.close()


def test_chamfer_guides_a_peg_that_lands_off_centre():
    """Aiming 5 mm beside a 3 mm-clearance hole: the lead-in chamfer slides the peg in; with a
    sharp rim the same placements catch on the rim (the physics a policy's small misses meet)."""
    narrow = task_config('peg_insert_narrow')
    with_chamfer = PegInsertionSim(SimConfig(**narrow))
    sharp = PegInsertionSim(SimConfig(**dict(narrow, chamfer_m=0.0)))
    seeds = range(5000, 5006)
    assert [run_expert(with_chamfer, s, 0.005) for s in seeds] == ['success'] * len(seeds)
    assert [run_expert(sharp, s, 0.005) for s in seeds].count('success') < len(seeds)
    # A sharp rim is one box per wall; the chamfered one adds a set-back top box and the slope.
    assert sharp.model.ngeom == with_chamfer.model.ngeom - 8


def test_the_sim_model_matches_the_robot_description():
    """hiors_common.robot is what every package uses; the MJCF must agree with it."""
    import mujoco

    from hiors_common import robot
    from hiors_sim.scene import build_mjcf
    model = mujoco.MjModel.from_xml_string(build_mjcf())
    for name, (lo, hi) in zip(robot.JOINT_NAMES, robot.JOINT_LIMITS):
        np.testing.assert_allclose(model.joint(name).range, [lo, hi], err_msg=name)
    assert len(HOME_Q) == len(robot.JOINT_NAMES)
    assert robot.GRIPPER_CLOSED <= robot.GRIPPER_OPEN <= robot.JOINT_LIMITS[-1][1]
