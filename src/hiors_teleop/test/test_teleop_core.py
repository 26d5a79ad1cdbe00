"""TeleopCore + JoyMapper without DDS."""
import numpy as np
import pytest

from hiors_teleop.joy_mapping import JoyMapConfig, JoyMapper
from hiors_teleop.mux import POSITION_LOWER, POSITION_UPPER
from hiors_teleop.teleop_core import (DeviceInput, TeleopCore, TeleopLimits, quat_angle, quat_from_rotvec,
                                      quat_mul)

HOME = np.array([0.0, 0.3, -0.3, 0.0, 0.5, 0.0, 0.02])


def core(mode='joint', kin=None):
    c = TeleopCore(TeleopLimits(np.array(POSITION_LOWER), np.array(POSITION_UPPER)), mode, kin)
    c.update_joint_state(HOME)
    return c


def test_takeover_starts_at_measured_and_integrates():
    c = core()
    r = c.tick(0.0, DeviceInput(takeover=True, joint_vel=np.zeros(6)))
    assert r.intervention is True and np.allclose(r.command, HOME)
    r = c.tick(0.1, DeviceInput(takeover=True, joint_vel=np.array([1.0, 0, 0, 0, 0, -0.5])))
    assert r.intervention is None
    assert r.command[0] == pytest.approx(0.1) and r.command[5] == pytest.approx(-0.05)
    r = c.tick(0.2, DeviceInput(takeover=False))
    assert r.intervention is False and r.command is None


def test_no_takeover_without_joint_state():
    c = TeleopCore(TeleopLimits(np.array(POSITION_LOWER), np.array(POSITION_UPPER)))
    r = c.tick(0.0, DeviceInput(takeover=True))
    assert r.intervention is None and r.command is None and 'no /joint_states' in r.messages[0][1]


def test_target_clipped_to_limits_and_gripper():
    c = core()
    c.tick(0.0, DeviceInput(takeover=True))
    for k in range(1, 200):
        r = c.tick(0.1 * k, DeviceInput(takeover=True, joint_vel=np.array([5.0, 0, 0, 0, 0, 0]),
                                       gripper_vel=1.0))
    assert r.command[0] == pytest.approx(POSITION_UPPER[0]) and r.command[6] == pytest.approx(0.04)
    r = c.tick(30.0, DeviceInput(takeover=True, gripper_abs=0.0))
    assert r.command[6] == 0.0


def test_device_lost_mid_takeover_keeps_intervention_and_resumes_from_measured():
    c = core()
    c.tick(0.0, DeviceInput(takeover=True))
    c.tick(0.1, DeviceInput(takeover=True, joint_vel=np.array([1.0, 0, 0, 0, 0, 0])))
    r = c.tick(0.2, None, healthy=False, reason='unplugged')
    assert r.command is None and r.intervention is None
    assert r.messages[0][0] == 'error' and 'not the policy' in r.messages[0][1]
    assert c.tick(0.3, None, healthy=False).messages == [], 'reported once'
    moved = HOME.copy()
    moved[0] = 0.07
    c.update_joint_state(moved)
    r = c.tick(1.0, DeviceInput(takeover=True))
    assert np.allclose(r.command, moved), 'after replug the target restarts from where the robot held'


def test_joy_mapper_deadzone_edges_toggle():
    m = JoyMapper(JoyMapConfig())
    axes = [0.0] * 6
    buttons = [0] * 11
    axes[1] = 0.05      # inside the deadzone
    inp = m.map(axes, buttons)
    assert not inp.takeover and np.allclose(inp.joint_vel, 0)
    axes[1] = 1.0
    buttons[9] = 1
    buttons[0] = 1
    inp = m.map(axes, buttons)
    assert inp.takeover and inp.joint_vel[0] == pytest.approx(0.5) and inp.events == ['success']
    inp = m.map(axes, buttons)
    assert inp.events == [], 'a held button fires once'
    buttons[10] = 1
    assert m.map(axes, buttons).gripper_vel == pytest.approx(0.04)
    tm = JoyMapper(JoyMapConfig(takeover_toggle=True))
    b = [0] * 11
    b[9] = 1
    assert tm.map([0] * 6, b).takeover
    b[9] = 0
    assert tm.map([0] * 6, b).takeover, 'toggle stays on after release'
    b[9] = 1
    assert not tm.map([0] * 6, b).takeover
    buttons[5] = 1
    assert m.map(axes, buttons).estop is True and m.map(axes, buttons).estop is None, 'e-stop on the press edge'
    ee = m.map([0.0, 0.0, 0.0, 1.0, 0.0, 0.0], buttons, mode='ee')
    assert ee.twist[2] == pytest.approx(0.1) and ee.joint_vel is None


def test_quaternion_helpers():
    q = quat_from_rotvec([0, 0, np.pi / 2])
    assert quat_angle(q) == pytest.approx(np.pi / 2)
    assert quat_angle(quat_mul(q, q)) == pytest.approx(np.pi)


def test_ee_mode_needs_kinematics():
    with pytest.raises(ValueError):
        TeleopCore(TeleopLimits(np.array(POSITION_LOWER), np.array(POSITION_UPPER)), 'ee', None)


SIM_HOME = np.array([0.0, 0.5, 1.6, 0.0, 1.04, 0.0, 0.035])


def _kin():
    kinematics = pytest.importorskip('hiors_sim.kinematics', reason='hiors_sim.kinematics not available')
    return kinematics.ArmKinematics()


def test_ee_twist_moves_tool_in_base_frame_with_robot_ik():
    kin = _kin()
    c = TeleopCore(TeleopLimits(np.array(POSITION_LOWER), np.array(POSITION_UPPER)), 'ee', kin)
    c.update_joint_state(SIM_HOME)
    c.tick(0.0, DeviceInput(takeover=True))
    p0, q0 = kin.fk(SIM_HOME[:6])
    for k in range(1, 21):   # 0.05 m/s up and 0.05 m/s forward for 1 s
        r = c.tick(0.05 * k, DeviceInput(takeover=True, twist=np.array([0.05, 0, 0.05, 0, 0, 0])))
    p1, q1 = kin.fk(r.command[:6])
    assert np.allclose(p1 - p0, [0.05, 0.0, 0.05], atol=3e-3), p1 - p0
    assert quat_angle(quat_mul(q1, np.array([q0[0], -q0[1], -q0[2], -q0[3]]))) < 0.02, 'orientation kept'


def test_ee_abs_offset_and_ik_jump_guard():
    kin = _kin()
    c = TeleopCore(TeleopLimits(np.array(POSITION_LOWER), np.array(POSITION_UPPER)), 'ee_abs', kin)
    c.update_joint_state(SIM_HOME)
    c.tick(0.0, DeviceInput(takeover=True, ee_offset=(np.zeros(3), np.array([1.0, 0, 0, 0]))))
    p0, _ = kin.fk(SIM_HOME[:6])
    r = c.tick(0.02, DeviceInput(takeover=True, ee_offset=(np.array([0.0, 0.03, 0.0]), np.array([1.0, 0, 0, 0]))))
    assert np.allclose(kin.fk(r.command[:6])[0] - p0, [0, 0.03, 0], atol=2e-3)
    before = r.command.copy()
    # a target far away in one step would need a large joint jump: refused, last target kept
    r = c.tick(0.04, DeviceInput(takeover=True, ee_offset=(np.array([0.0, -0.6, -0.3]), np.array([1.0, 0, 0, 0]))))
    assert np.allclose(r.command, before) and 'not reachable' in r.messages[0][1]


def test_refused_takeover_reported_once_per_press():
    c = TeleopCore(TeleopLimits(np.array(POSITION_LOWER), np.array(POSITION_UPPER)))
    msgs = [m for k in range(5) for m in c.tick(0.02 * k, DeviceInput(takeover=True)).messages]
    assert len(msgs) == 1
    c.tick(0.2, DeviceInput(takeover=False))
    assert c.tick(0.3, DeviceInput(takeover=True)).messages, 'a new press reports again'


def test_estop_freezes_the_target_and_a_clear_needs_a_new_press():
    """Every device runs this core: while the e-stop holds nothing is integrated or sent; cleared
    with the takeover still held -> still nothing; released and pressed again -> from measured."""
    c = core()
    c.tick(0.0, DeviceInput(takeover=True))
    c.tick(0.1, DeviceInput(takeover=True, joint_vel=np.array([1.0, 0, 0, 0, 0, 0])))
    assert c.set_estop(True)[0][0] == 'warn'
    for k in range(2, 12):                       # stick held during the e-stop: nothing
        r = c.tick(0.1 * k, DeviceInput(takeover=True, joint_vel=np.array([1.0, 0, 0, 0, 0, 0])))
        assert r.command is None
    assert 'press it again' in c.set_estop(False)[0][1]
    for k in range(12, 20):                      # cleared, still held: nothing
        r = c.tick(0.1 * k, DeviceInput(takeover=True, joint_vel=np.array([1.0, 0, 0, 0, 0, 0])))
        assert r.command is None and r.intervention is None
    r = c.tick(2.0, DeviceInput(takeover=False))
    assert r.intervention is False
    moved = HOME.copy()
    moved[0] = 0.4                               # where the arm really is now
    c.update_joint_state(moved)
    r = c.tick(2.1, DeviceInput(takeover=True, joint_vel=np.zeros(6)))
    assert r.intervention is True and np.allclose(r.command, moved), 'restarts from the measured position'
    r = c.tick(2.2, DeviceInput(estop=True, takeover=True))   # the device's own e-stop button
    assert r.estop is True and r.command is None and c.estop
