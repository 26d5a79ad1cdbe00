import numpy as np
import pytest

from hiors_sim.expert import quat_yaw, wrap_quarter
from hiors_sim.sim_core import PegInsertionSim
from hiors_sim.sim_human import SimHuman, SimHumanConfig


def _run(human, sim, policy=None, max_ticks=2000, dt=0.1):
    """Drive SimHuman against the sim core; returns (events, intervention trace)."""
    events, trace = [], []
    now, command = 0.0, None
    for _ in range(max_ticks):
        q = sim.joint_positions()
        pol = policy(q) if policy else None
        out = human.tick(now, q, sim.task_state(), sim.success(), pol)
        if out['reset']:
            sim.reset(len(events))
            human.reset_done(now)
        events += out['events']
        trace.append(out['intervention'])
        if out['command'] is not None:
            command = out['command']
        elif pol is not None:
            command = pol
        sim.step(command)
        now += dt
        if human.state == 'done':
            break
    return events, trace


@pytest.mark.parametrize('approach_funnel_slope', [0.0, 1.5])
def test_demo_mode_labels_successes_and_stops(approach_funnel_slope):
    sim = PegInsertionSim()
    human = SimHuman(SimHumanConfig(mode='demo', num_episodes=2, episode_timeout_s=20.0,
                                    approach_funnel_slope=approach_funnel_slope))
    assert human.expert.config.funnel_slope == approach_funnel_slope    # the person's approach style
    events, trace = _run(human, sim)
    assert events == ['start', 'success', 'start', 'success']
    assert human.state == 'done' and any(trace)


def test_intervene_mode_takes_over_from_a_frozen_policy_and_hands_back():
    sim = PegInsertionSim()
    human = SimHuman(SimHumanConfig(mode='intervene', num_episodes=1, episode_timeout_s=30.0,
                                    drift_time_s=0.5, min_takeover_s=1.0, max_takeover_s=2.0))
    frozen = {}

    def policy(q):      # a policy that never moves: stays where it first saw the arm
        frozen.setdefault('q', q.copy())
        return frozen['q']
    events, trace = _run(human, sim, policy)
    assert events[0] == 'start' and events[-1] in ('success', 'failure')
    switches = sum(1 for a, b in zip(trace, trace[1:]) if a != b)
    assert human.takeovers >= 1 and switches >= 2          # took over and handed back at least once


def test_label_only_never_takes_over_and_times_out():
    sim = PegInsertionSim()
    human = SimHuman(SimHumanConfig(mode='label_only', num_episodes=1, episode_timeout_s=3.0))
    events, trace = _run(human, sim, policy=lambda q: q)
    assert events == ['start', 'failure'] and human.takeovers == 0
    # The human only holds the arm between episodes (reset / settle), never during one.
    start = next(i for i, flag in enumerate(trace) if not flag)
    assert not any(trace[start:start + 20])


def test_human_holds_between_episodes_and_stops_a_crash_into_the_peg():
    sim = PegInsertionSim()
    human = SimHuman(SimHumanConfig(mode='intervene', num_episodes=1, episode_timeout_s=10.0,
                                    drift_time_s=5.0, stall_time_s=20.0))
    sim.reset(0)
    out = human.tick(0.0, sim.joint_positions(), sim.task_state(), False, None)
    assert out['reset'] and out['intervention'] and out['command'] is not None   # holds during reset
    human.reset_done(0.0)
    out = human.tick(1.0, sim.joint_positions(), sim.task_state(), False, None)
    assert out['events'] == [] and not out['intervention']          # lets go just before the start
    out = human.tick(1.05, sim.joint_positions(), sim.task_state(), False, None)
    assert out['events'] == ['start'] and not out['intervention']
    # The policy commands a finger right onto the standing peg (3 cm off its axis across the
    # fingers, fingertips below its top): immediate takeover.
    peg = sim.task_state()['peg_pos']
    from hiors_sim.kinematics import quat_from_yaw_down
    q_bad = human.expert.kin.ik(peg + [0.0, 0.03, 0.05], quat_from_yaw_down(0.0), sim.joint_positions()[:6])
    out = human.tick(1.1, sim.joint_positions(), sim.task_state(), False, list(q_bad) + [0.035])
    assert out['intervention'] and human.takeovers == 1
    assert human.takeover_log == [('into_peg', human.expert.phase)]


def _started_human(sim, **overrides):
    human = SimHuman(SimHumanConfig(mode='intervene', num_episodes=1, episode_timeout_s=10.0,
                                    drift_time_s=5.0, stall_time_s=20.0, **overrides))
    sim.reset(0)
    human.tick(0.0, sim.joint_positions(), sim.task_state(), False, None)
    human.reset_done(0.0)
    human.tick(1.0, sim.joint_positions(), sim.task_state(), False, None)
    assert human.tick(1.05, sim.joint_positions(), sim.task_state(), False, None)['events'] == ['start']
    return human


@pytest.mark.parametrize('along_width, along_closing, gripper, takeover, height, opening', [
    (0.0, 0.0, 0.035, False, 0.045, None),   # open fingers coming down around the peg, ahead of the expert
    (0.0, 0.0, 0.0, False, 0.045, None),     # closing them around it at grasp height: a grasp
    (0.0, 0.028, 0.035, True, 0.045, None),  # a finger would land on the peg
    (0.012, 0.0, 0.0, True, 0.045, None),    # closing 12 mm off its axis: pushes it rather than grips it
    # Half-closed fingers, 7 mm off the axis across them, closing further: with the tips 1.5 cm
    # below the peg top they straddle it and the pads centre it (a grasp started high); with the
    # tips still 1 cm above the top one finger comes down on it.
    (0.0, 0.007, 0.0, False, 0.060, 0.017),
    (0.0, 0.007, 0.0, True, 0.085, 0.017),
])
def test_a_descent_onto_the_peg_is_judged_by_where_the_fingers_go(along_width, along_closing, gripper, takeover,
                                                                  height, opening):
    from hiors_sim.kinematics import quat_from_yaw_down, tool_yaw
    sim = PegInsertionSim()
    human = _started_human(sim)
    ts, q = sim.task_state(), sim.joint_positions()
    if opening is not None:
        q = q.copy()
        q[6] = opening                   # the fingers' measured opening
    yaw = tool_yaw(human.expert.kin.fk(q[:6])[1])
    yaw += wrap_quarter(quat_yaw(ts['peg_quat']) - yaw)                 # fingers square to the peg
    width_axis, closing_axis = np.array([np.cos(yaw), np.sin(yaw), 0]), np.array([np.sin(yaw), -np.cos(yaw), 0])
    target = ts['peg_pos'] + [0, 0, height] + along_width * width_axis + along_closing * closing_axis
    cmd = list(human.expert.kin.ik(target, quat_from_yaw_down(yaw), q[:6])) + [gripper]
    out = human.tick(1.1, q, ts, False, cmd)
    assert out['intervention'] is takeover and human.takeovers == int(takeover)


@pytest.mark.parametrize('lookahead,expected', [(0, False), (2, True)])
def test_lookahead_sees_a_descent_heading_into_the_peg(lookahead, expected):
    from hiors_sim.kinematics import quat_from_yaw_down
    sim = PegInsertionSim()
    human = _started_human(sim, lookahead_ticks=lookahead)
    # Two commands of a descent onto the peg (a finger over it), both still above the danger
    # zone (fingertips 10 cm, then 8 cm above the peg's top): only a look ahead sees where it goes.
    peg, q = sim.task_state()['peg_pos'], sim.joint_positions()
    cmds = [list(human.expert.kin.ik(peg + [0.0, 0.03, z], quat_from_yaw_down(0.0), q[:6])) + [0.035]
            for z in (0.14, 0.12)]
    for t, cmd in zip((1.1, 1.2), cmds):
        out = human.tick(t, q, sim.task_state(), False, cmd)
    assert out['intervention'] is expected and human.takeovers == int(expected)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError):
        SimHuman(SimHumanConfig(mode='sometimes'))


def test_the_capture_range_is_what_clearance_and_chamfer_catch():
    from hiors_sim.sim_human import capture_range_m
    assert capture_range_m('peg_insert_narrow') == pytest.approx(0.006)    # 3 mm + 4 mm chamfer - 1 mm
    assert capture_range_m('peg_insert') == pytest.approx(0.0045)
    assert SimHuman(SimHumanConfig(task='peg_insert_narrow')).misaligned_m == pytest.approx(0.006)
    assert SimHuman(SimHumanConfig(task='peg_insert_narrow', misaligned_m=0.01)).misaligned_m == 0.01


def _aiming_beside_the_hole(off_x_m):
    """A narrow-task sim and a 'policy' that grasps and carries as the expert does but aims
    `off_x_m` beside the hole."""
    from hiors_sim.expert import ScriptedExpert
    from hiors_sim.sim_core import SimConfig
    from hiors_sim.tasks import task_config
    sim = PegInsertionSim(SimConfig(**task_config('peg_insert_narrow')))
    off_expert = ScriptedExpert()
    off = np.array([off_x_m, 0.0, 0.0])

    def policy(q):
        ts = sim.task_state()
        return off_expert.act(q, ts['peg_pos'], ts['peg_quat'], ts['hole_pos'] + off, ts['hole_quat'])
    return sim, policy


@pytest.mark.parametrize('misaligned_m, outcome', [(0.0, 'success'), (1.0, 'failure')])
def test_takes_over_a_peg_lowered_beside_the_hole(misaligned_m, outcome):
    """A 'policy' that grasps and carries well but lowers the peg 9 mm beside the hole (beyond
    clearance + chamfer): the human sees it and takes over; the expert lifts, re-aligns and
    inserts. With the check off (1 m) the human notices too late and the episode fails."""
    sim, policy = _aiming_beside_the_hole(0.009)
    human = SimHuman(SimHumanConfig(mode='intervene', num_episodes=1, episode_timeout_s=25.0,
                                    task='peg_insert_narrow', misaligned_m=misaligned_m))
    events, trace = _run(human, sim, policy)
    assert events[-1] == outcome
    assert outcome == 'failure' or human.takeovers >= 1


@pytest.mark.parametrize('slip_m, outcome', [(0.0, 'failure'), (0.003, 'success')])
def test_takes_over_a_peg_sliding_up_in_the_fingers(slip_m, outcome):
    """The 'policy' of the test above presses the held peg onto the rim 9 mm beside the hole, with
    the misaligned-peg check off: the peg slides up between the pads and pivots out. A person who
    watches the grip takes over once it has slid 3 mm; the expert then lifts, re-aligns and inserts."""
    sim, policy = _aiming_beside_the_hole(0.009)
    human = SimHuman(SimHumanConfig(mode='intervene', num_episodes=1, episode_timeout_s=25.0,
                                    task='peg_insert_narrow', misaligned_m=1.0, slip_m=slip_m))
    events, _ = _run(human, sim, policy)
    assert events[-1] == outcome
    assert (('slipping', 'lift') in human.takeover_log) is (slip_m > 0)


@pytest.mark.parametrize('dz, takeover', [(0.0, True), (0.01, False)])
def test_takes_over_a_peg_slid_about_on_the_rim_unless_the_policy_lifts_it(dz, takeover):
    """A held peg resting on the fixture top 9 mm beside the hole, the policy sliding it
    sideways (no downward motion): a person lifts and re-aligns; a policy lifting it itself is
    left to it."""
    from hiors_sim.sim_core import SimConfig
    from hiors_sim.tasks import task_config
    sim = PegInsertionSim(SimConfig(**task_config('peg_insert_narrow')))
    human = _started_human(sim)
    human.expert.phase = 'lift'                        # the expert's reading: peg in hand, low
    ts = sim.task_state()
    hole = np.asarray(ts['hole_pos'], float)
    peg_on_rim = dict(ts, peg_pos=hole + [0.009, 0.0, 0.04])   # peg bottom on the fixture top
    tcp = peg_on_rim['peg_pos'] + [0, 0, 0.045]
    human._last_tcp = tcp
    cmd_tcp = tcp + [0.0, 0.004, dz]                   # slide sideways (or lift)
    assert human._peg_onto_rim_beside_hole(cmd_tcp, peg_on_rim) is takeover


def test_a_peg_already_down_in_the_hole_is_not_on_the_rim():
    """Moving a peg that is 3 cm down in the hole sideways (its centre 7 mm off the axis: it
    tilts in the clearance) is not a landing beside the hole: nothing to take over."""
    from hiors_sim.sim_core import SimConfig
    from hiors_sim.tasks import task_config
    sim = PegInsertionSim(SimConfig(**task_config('peg_insert_narrow')))
    human = _started_human(sim, task='peg_insert_narrow')
    ts = sim.task_state()
    hole = np.asarray(ts['hole_pos'], float)
    for depth, expected in ((0.0, True), (0.03, False)):
        peg = dict(ts, peg_pos=hole + [0.007, 0.0, 0.04 - depth])
        human._last_tcp = peg['peg_pos'] + [0, 0, 0.045]
        assert human._peg_onto_rim_beside_hole(human._last_tcp + [0.0, 0.002, 0.0], peg) is expected


def test_homing_ends_when_the_command_is_home_without_waiting_for_the_arm():
    from hiors_sim.scene import HOME_Q
    home = np.asarray(HOME_Q, float)
    human = SimHuman(SimHumanConfig(mode='label_only', num_episodes=2))
    human.state, human._t_state = 'homing', 0.0          # as right after an episode's end
    away = home + 0.3
    assert np.allclose(human.tick(0.1, away, None, False, None, commanded=away)['command'], home)
    assert human.state == 'homing', 'neither the arm nor its command is home yet'
    human.tick(0.2, away, None, False, None, commanded=home)
    assert human.state == 'need_reset', 'the command is home: the reset may teleport the arm now'
    human.state, human._t_state = 'homing', 1.0
    human.tick(1.1, away, None, False, None)
    assert human.state == 'homing'
    human.tick(1.2, home, None, False, None)
    assert human.state == 'need_reset', 'no command known: the measured arm decides'
