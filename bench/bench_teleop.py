"""Teleop benchmark: mux added latency and takeover latency (device event -> robot command).

Every node runs as its own process with its shipped parameters over local DDS:
1. mux added latency: this process publishes policy commands at --rate Hz (joint1 carries a
   sequence number, tiny steps within the velocity limit so the mux passes them unchanged) and
   times each one to its copy on /forward_position_controller/commands. Baseline: the same
   message type over one DDS hop to this process's own subscription. added = mux path - 1 hop.
2. takeover latency per device: from the device event (Joy message with the deadman pressed; a
   key byte written to the keyboard node's terminal; a SpaceMouse HID report written to the
   node's device file; a VR websocket pose with the trigger pulled) to the first robot command
   whose /hiors/executed_action source is 'human'. Also the largest joint step at the switch
   (smooth takeover: no jump). VR needs hiors_sim.kinematics (skipped without it).
3. joy safety: the pad unplugged at full deflection (motion after its last message, time to hold)
   and the e-stop cleared with the deadman and stick held (motion until re-armed).

    .venv/bin/python bench/bench_teleop.py            # 200 mux samples, 20 takeovers per device
    .venv/bin/python bench/bench_teleop.py --quick
"""
import argparse
import json
import os
import pty
import sys
import tempfile
import time

from hiors_common.topics import (ESTOP, EXECUTED_ACTION, JOINT_STATES, JOY, POLICY_COMMAND, ROBOT_COMMAND,
                                 event_qos, reliable_qos)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MUX_YAML = os.path.join(ROOT, 'src', 'hiors_teleop', 'config', 'command_mux.yaml')
HOME = [0.0, 0.3, -0.3, 0.0, 0.5, 0.0, 0.02]


def stats(xs):
    import numpy as np
    if not xs:
        return {'n': 0}
    a = np.asarray(xs) * 1e3
    return {'n': len(xs), 'mean_ms': round(float(a.mean()), 2), 'p50_ms': round(float(np.percentile(a, 50)), 2),
            'p90_ms': round(float(np.percentile(a, 90)), 2), 'p99_ms': round(float(np.percentile(a, 99)), 2),
            'max_ms': round(float(a.max()), 2)}


class Bench:
    def __init__(self):
        from hiors_common.ros_env import use_local_ros_network
        use_local_ros_network(domain_id=None)
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray
        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node('bench_teleop')
        rel, ev = reliable_qos(10), event_qos()
        self.F = Float64MultiArray
        self.js_pub = self.node.create_publisher(JointState, JOINT_STATES, 10)
        self.pol_pub = self.node.create_publisher(Float64MultiArray, POLICY_COMMAND, rel)
        self.loop_pub = self.node.create_publisher(Float64MultiArray, '/bench/loopback', rel)
        self.cmds, self.execs, self.loop = [], [], []
        self.node.create_subscription(Float64MultiArray, ROBOT_COMMAND,
                                      lambda m: self.cmds.append((time.monotonic(), m.data[0])), rel)
        self.node.create_subscription(Float64MultiArray, '/bench/loopback',
                                      lambda m: self.loop.append((time.monotonic(), m.data[0])), rel)
        self.node.create_subscription(JointState, EXECUTED_ACTION,
                                      lambda m: self.execs.append((time.monotonic(), m.header.frame_id,
                                                                   list(m.position))), ev)
        self.q = list(HOME)
        self.policy = list(HOME)
        self.node.create_timer(0.01, self._js)
        self.policy_on = True
        self.node.create_timer(0.1, self._policy)

    def _js(self):
        from sensor_msgs.msg import JointState
        from hiors_common.robot import JOINT_NAMES
        self.js_pub.publish(JointState(name=list(JOINT_NAMES),
                                       position=[float(x) for x in self.q]))

    def _policy(self):
        if self.policy_on:
            self.pol_pub.publish(self.F(data=[float(x) for x in self.policy]))

    def spin(self, seconds=None, until=None, timeout=10.0):
        deadline = time.monotonic() + (seconds if seconds is not None else timeout)
        while time.monotonic() < deadline:
            self.rclpy.spin_once(self.node, timeout_sec=0.002)
            if until is not None and until():
                return True
        return until() if until is not None else True

    def last_source(self):
        return self.execs[-1][1] if self.execs else None


def start(module, params, log):
    from hiors_common.testing import NodeProcess
    ros_args = []
    for k, v in params.items():
        ros_args += ['-p', f'{k}:={v}']
    return NodeProcess(module, ros_args=ros_args, log_path=log).start()


def mux_latency(b, n, rate):
    """policy command -> robot command, and a one-hop baseline."""
    b.policy_on = False
    sent = {}
    loop_sent = {}
    period = 1.0 / rate
    base = 0.0
    b.spin(0.5)
    for k in range(n):
        v = base + (k + 1) * 1e-4      # 1e-4 rad per message: far inside the velocity limit
        cmd = list(HOME)
        cmd[0] = v
        t = time.monotonic()
        b.pol_pub.publish(b.F(data=cmd))
        sent[round(v, 7)] = t
        t = time.monotonic()
        b.loop_pub.publish(b.F(data=[float(k)] * 7))
        loop_sent[float(k)] = t
        b.spin(period)
    b.spin(0.3)
    # only the first arrival of each value (heartbeats re-send the same command)
    first = {}
    for t, v in b.cmds:
        key = round(v, 7)
        if key in sent and key not in first:
            first[key] = t - sent[key]
    one_hop = [t - loop_sent[v] for t, v in b.loop if v in loop_sent]
    b.policy_on = True
    return list(first.values()), one_hop, len(sent) - len(first)


def takeover_trials(b, n, press, release, name):
    """press() at t0 -> first 'human' executed_action; release() -> back to 'policy'."""
    import numpy as np
    lat, jumps, failures = [], [], 0
    for _ in range(n):
        if not b.spin(until=lambda: b.last_source() == 'policy', timeout=5):
            failures += 1
            release()
            continue
        b.spin(0.15 + 0.2 * np.random.rand())
        k0 = len(b.execs)
        prev = np.asarray(b.execs[-1][2])
        t0 = time.monotonic()
        press()
        ok = b.spin(until=lambda: any(s == 'human' for _, s, _ in b.execs[k0:]), timeout=3)
        if not ok:
            failures += 1
        else:
            t, _, pos = next(e for e in b.execs[k0:] if e[1] == 'human')
            lat.append(t - t0)
            jumps.append(float(np.max(np.abs(np.asarray(pos) - prev))))
        b.spin(0.2)
        release()
    return {'device': name, **stats(lat), 'failures': failures,
            'max_joint_step_at_takeover_rad': round(max(jumps), 5) if jumps else None}


def joy_safety_trials(b, n, joy_state, joy_set):
    """Issue 14 goals with the real joy and mux nodes (the arm modelled as tracking the command):
    the pad unplugged at full deflection -> motion after its last message and time to hold; the
    e-stop cleared with the deadman and the stick still held -> motion until re-armed."""
    import numpy as np
    from std_msgs.msg import Bool
    estop_pub = b.node.create_publisher(Bool, ESTOP, 10)
    follow = b.node.create_timer(0.02, lambda: setattr(b, 'q', list(b.execs[-1][2])) if b.execs else None)
    unplug_rad, hold_ms, estop_rad, failures = [], [], [], 0
    for _ in range(n):
        if not b.spin(until=lambda: b.last_source() == 'policy', timeout=5):
            failures += 1
        joy_state['axes'][1] = 1.0                        # full deflection, deadman held
        joy_set(True)()
        if not b.spin(until=lambda: b.last_source() == 'human', timeout=3):
            failures += 1
        b.spin(0.6)                                        # past the takeover blend
        joy_state['on'] = False                            # unplugged
        b.spin(0.01)
        t_last = joy_state['last']
        at_last = [p for t, s, p in b.execs if t <= t_last][-1][0]
        b.spin(0.6)
        after = [(t, s, p) for t, s, p in b.execs if t > t_last]
        unplug_rad.append(max(abs(p[0] - at_last) for _, _, p in after))
        holds = [t for t, s, _ in after if s == 'hold']
        hold_ms.append(1000 * (holds[0] - t_last) if holds else float('nan'))
        joy_state['axes'][1] = 0.0
        joy_state['on'] = True                             # replugged, deadman still held
        b.spin(until=lambda: b.last_source() == 'human', timeout=3)
        estop_pub.publish(Bool(data=True))
        b.spin(until=lambda: b.last_source() == 'hold', timeout=3)
        joy_state['axes'][1] = 1.0                         # the stick pushed during the e-stop
        b.spin(0.3)
        estop_pub.publish(Bool(data=False))
        b.spin(0.05)
        t_clear = time.monotonic()
        b.spin(1.0)
        cleared = [p[0] for t, s, p in b.execs if t > t_clear]
        estop_rad.append(max(abs(v - cleared[0]) for v in cleared) if cleared else float('nan'))
        joy_state['axes'][1] = 0.0
        joy_set(False)()                                   # release, press again (re-arm), release
        b.spin(0.3)
        joy_set(True)()
        b.spin(0.3)
        joy_set(False)()
    b.node.destroy_timer(follow)
    b.q = list(HOME)                                       # the arm back home for the next trials
    b.spin(until=lambda: b.last_source() == 'policy' and abs(b.execs[-1][2][0] - HOME[0]) < 1e-6, timeout=10)
    return {'trials': n, 'failures': failures, 'joy_speed_rad_s': 0.5,
            'unplugged_further_motion_rad_max': round(float(np.nanmax(unplug_rad)), 4),
            'unplugged_further_motion_rad_mean': round(float(np.nanmean(unplug_rad)), 4),
            'unplugged_hold_after_last_joy_ms_max': round(float(np.nanmax(hold_ms)), 1),
            'estop_cleared_deadman_held_motion_rad_max': round(float(np.nanmax(estop_rad)), 6)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--samples', type=int, default=200, help='policy commands for the mux latency')
    ap.add_argument('--rate', type=float, default=50.0, help='policy command rate for the mux latency')
    ap.add_argument('--takeovers', type=int, default=20, help='takeovers per device')
    ap.add_argument('--quick', action='store_true', help='50 samples, 5 takeovers')
    args = ap.parse_args()
    if args.quick:
        args.samples, args.takeovers = 50, 5
    os.environ.setdefault('ROS_DOMAIN_ID', str(40 + os.getpid() % 50))
    tmp = tempfile.mkdtemp(prefix='hiors-bench-teleop-')
    procs = []
    results = {}
    b = Bench()
    try:
        from hiors_common.testing import NodeProcess
        mux = NodeProcess('hiors_teleop.command_mux_node',
                          ros_args=['-r', '__node:=command_mux', '--params-file', MUX_YAML],
                          log_path=os.path.join(tmp, 'mux.log')).start()
        procs.append(mux)
        joy = start('hiors_teleop.joy_teleop_node', {}, os.path.join(tmp, 'joy.log'))
        procs.append(joy)
        master, slave = pty.openpty()
        kb = start('hiors_teleop.keyboard_teleop_node', {'tty_path': os.ttyname(slave)}, os.path.join(tmp, 'kb.log'))
        procs.append(kb)
        fifo = os.path.join(tmp, 'hidraw-fake')
        os.mkfifo(fifo)
        sm_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        sm = start('hiors_teleop.spacemouse_teleop_node', {'device_path': fifo, 'mode': 'joint',
                                                            'auto_release_s': 0.0}, os.path.join(tmp, 'sm.log'))
        procs.append(sm)
        if not b.spin(until=lambda: b.last_source() == 'policy', timeout=60):
            raise RuntimeError('mux never produced policy output:\n' + mux.log())
        b.spin(2.0)    # let every node discover every other

        mux_lat, one_hop, lost = mux_latency(b, args.samples, args.rate)
        m, h = stats(mux_lat), stats(one_hop)
        results['mux_policy_to_robot'] = {**m, 'lost': lost}
        results['one_dds_hop_baseline'] = h
        if m['n'] and h['n']:
            results['mux_added_ms'] = {'p50': round(m['p50_ms'] - h['p50_ms'], 2),
                                       'p99': round(m['p99_ms'] - h['p99_ms'], 2)}

        import threading

        from sensor_msgs.msg import Joy
        joy_pub = b.node.create_publisher(Joy, JOY, 10)
        joy_state = {'buttons': [0] * 11, 'axes': [0.0] * 6, 'on': True, 'last': 0.0}
        joy_done = threading.Event()

        def joy_publish():
            joy_pub.publish(Joy(axes=list(joy_state['axes']), buttons=list(joy_state['buttons'])))
            joy_state['last'] = time.monotonic()

        def joy_driver():     # the joy driver's steady 20 Hz autorepeat
            while not joy_done.wait(0.05):
                if joy_state['on']:
                    joy_publish()
        threading.Thread(target=joy_driver, daemon=True).start()

        def joy_set(pressed):
            def f():
                joy_state['buttons'][9] = 1 if pressed else 0
                joy_publish()
            return f
        b.spin(1.0)
        results['takeover_joy'] = takeover_trials(b, args.takeovers, joy_set(True), joy_set(False), 'joy')
        results['joy_safety'] = joy_safety_trials(b, max(3, args.takeovers // 4), joy_state, joy_set)
        joy_done.set()
        results['takeover_keyboard'] = takeover_trials(b, args.takeovers, lambda: os.write(master, b' '),
                                                       lambda: os.write(master, b' '), 'keyboard')

        def sm_click():
            os.write(sm_fd, b'\x03\x01\x00')
            os.write(sm_fd, b'\x03\x00\x00')
        results['takeover_spacemouse'] = takeover_trials(b, args.takeovers, sm_click, sm_click, 'spacemouse')

        try:
            import hiors_sim.kinematics  # noqa: F401
            have_kin = True
        except ImportError:
            have_kin = False
        if have_kin:
            results['takeover_vr'] = vr_trials(b, args.takeovers, tmp, procs)
        else:
            results['takeover_vr'] = 'skipped: hiors_sim.kinematics not available'
        os.close(master)
        os.close(slave)
        os.close(sm_fd)
    finally:
        for p in procs:
            p.stop()
        b.node.destroy_node()
        b.rclpy.try_shutdown()
    print(json.dumps(results, indent=1))
    return 0


def vr_trials(b, n, tmp, procs):
    from websockets.sync.client import connect
    vr = start('hiors_teleop.vr_teleop_node', {'port': 0}, os.path.join(tmp, 'vr.log'))
    procs.append(vr)
    url = None
    deadline = time.monotonic() + 30
    while url is None and time.monotonic() < deadline:
        for line in vr.log().splitlines():
            if 'VR_SERVER ' in line:
                url = json.loads(line.split('VR_SERVER ', 1)[1])['port']
        b.spin(0.1)
    if url is None:
        return 'failed: VR node did not start: ' + vr.log()[-500:]
    with connect(f'ws://127.0.0.1:{url}/ws') as ws:
        return _vr_stream_trials(b, n, ws)


def _vr_stream_trials(b, n, ws):
    state = {'trigger': 0.0}
    import threading
    stop = threading.Event()

    def stream():
        while not stop.is_set():
            ws.send(json.dumps({'type': 'pose', 'pos': [0, 1, -0.3], 'quat': [0, 0, 0, 1],
                                'trigger': state['trigger'], 'buttons': []}))
            time.sleep(1 / 60)
    th = threading.Thread(target=stream, daemon=True)
    th.start()

    def setter(v):
        def f():
            state['trigger'] = v
            ws.send(json.dumps({'type': 'pose', 'pos': [0, 1, -0.3], 'quat': [0, 0, 0, 1], 'trigger': v,
                                'buttons': []}))
        return f
    b.spin(3.0)    # the VR node started last: let it discover /joint_states first
    try:
        return takeover_trials(b, n, setter(1.0), setter(0.0), 'vr (websocket client)')
    finally:
        stop.set()
        th.join(2)


if __name__ == '__main__':
    sys.exit(main())
