"""Command mux node: the single writer of the robot command.

Inputs: /hiors/policy/command, /hiors/teleop/command (Float64MultiArray, 7 absolute joint targets),
/hiors/intervention (Bool, human has control), /hiors/estop (Bool) and the SetBool service
/hiors/set_estop (re-published on /hiors/estop so every device sees it), the Trigger service
/hiors/resume (re-arm after an e-stop clear), /hiors/teleop/stale (Bool, the device's input stopped),
/joint_states (hold position), /hiors/episode/event ('start' resyncs the limiter).
Outputs: /forward_position_controller/commands (Float64MultiArray), /hiors/executed_action
(JointState, header.frame_id = policy|human|hold), /hiors/mux/status (String JSON, on change and
1 Hz), /diagnostics. Also hosts the episode Trigger services /hiors/episode/<action>.
All the decisions live in `mux.CommandMux`; this file only moves messages.
"""
import json
import time

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from hiors_common.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.topics import EPISODE_SERVICE_PREFIX, event_qos, reliable_qos

from .mux import HOLD, HUMAN, POLICY, WAITING, CommandMux, MuxConfig
from .ros_episode import EpisodeControl

WARN_REPEAT_S = 10.0     # a repeated warning is logged at most this often, with its count


class CommandMuxNode(Node):
    def __init__(self):
        super().__init__('command_mux')
        self.cfg = declare_config(self, MuxConfig)
        self.mux = CommandMux(self.cfg)
        self.index = {name: i for i, name in enumerate(self.cfg.joint_names)}
        rel, events = reliable_qos(10), event_qos()
        self.cmd_pub = self.create_publisher(Float64MultiArray, self.cfg.command_topic, rel)
        self.exec_pub = self.create_publisher(JointState, self.cfg.executed_topic, events)
        self.status_pub = self.create_publisher(String, self.cfg.status_topic, rel)
        self.diag = DiagnosticsPublisher(self, 'hiors_command_mux')
        self.create_subscription(Float64MultiArray, self.cfg.policy_topic,
                                 lambda m: self._on_command(POLICY, m), rel)
        self.create_subscription(Float64MultiArray, self.cfg.teleop_topic,
                                 lambda m: self._on_command(HUMAN, m), rel)
        self.create_subscription(Bool, self.cfg.intervention_topic, self._on_intervention, events)
        self.create_subscription(Bool, self.cfg.estop_topic, lambda m: self._set_estop(m.data), rel)
        self.create_subscription(JointState, self.cfg.joint_states_topic, self._on_joint_state, 10)
        self.create_subscription(String, self.cfg.episode_event_topic, self._on_event, events)
        self.create_subscription(Bool, self.cfg.teleop_stale_topic, self._on_teleop_stale, rel)
        self.estop_pub = self.create_publisher(Bool, self.cfg.estop_topic, rel)
        self.create_service(SetBool, self.cfg.estop_service, self._on_estop_srv)
        self.create_service(Trigger, self.cfg.resume_service, self._on_resume_srv)
        self.episode = EpisodeControl(self, self.cfg.episode_event_topic, self.cfg.reset_service,
                                      services_prefix=EPISODE_SERVICE_PREFIX if self.cfg.episode_services else None)
        self._warned = {}      # warning key -> [last time logged, repeats since]
        self._missing_joints_logged = False
        self.create_timer(1.0 / self.cfg.rate_hz, self._tick)
        self.create_timer(self.cfg.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f'command mux: {self.cfg.policy_topic} (policy) / {self.cfg.teleop_topic} (human) -> '
            f'{self.cfg.command_topic}; min rate {self.cfg.rate_hz:g} Hz, watchdog '
            f'{self.cfg.watchdog_timeout_s:g} s, blend {self.cfg.blend_time_s:g} s')

    @staticmethod
    def now() -> float:
        return time.monotonic()

    # ---- inputs -------------------------------------------------------------------------------
    def _on_command(self, source, msg):
        now = self.now()
        ok, reason = self.mux.submit(source, msg.data, now)
        if not ok:
            hint = (' (an untrained or mis-normalised policy? the robot does not follow it)'
                    if source == POLICY and reason.startswith('out of range') else '')
            self._warn_throttled(now, f'dropped {source} command', f'{reason}{hint}; totals: '
                                 f'{self.mux.status(now)["dropped"]}')
            return
        if self.cfg.publish_on_command and self.mux.active_source(now) == source:
            self._send(now)

    def _on_intervention(self, msg):
        now = self.now()
        if bool(msg.data) != self.mux.intervention:
            self.mux.set_intervention(msg.data, now)
            self._send(now)   # takeover / hand-back acts now, not at the next tick
        else:
            self.mux.set_intervention(msg.data, now)

    def _set_estop(self, flag):
        now = self.now()
        self.mux.set_estop(bool(flag), now)
        self._send(now)

    def _on_teleop_stale(self, msg):
        now = self.now()
        self.mux.set_teleop_stale(msg.data, now)
        self._send(now)          # hold at once, not at the next tick

    def _on_estop_srv(self, req, resp):
        self._set_estop(req.data)
        self.estop_pub.publish(Bool(data=bool(req.data)))   # the devices stop / re-arm on it too
        resp.success = True
        resp.message = 'e-stop engaged: holding' if req.data else 'e-stop cleared: re-arm to move'
        return resp

    def _on_resume_srv(self, req, resp):
        now = self.now()
        resp.success, resp.message = self.mux.rearm(now)
        self._send(now)
        return resp

    def _on_joint_state(self, msg):
        if not msg.name or len(msg.position) != len(msg.name):
            return
        pos = dict(zip(msg.name, msg.position))
        try:
            q = [pos[n] for n in self.cfg.joint_names]
        except KeyError as exc:
            if not self._missing_joints_logged:
                self._missing_joints_logged = True
                self.get_logger().error(f'{self.cfg.joint_states_topic} lacks joint {exc}; names: {list(msg.name)}')
            return
        self.mux.update_joint_state(q, self.now())

    def _on_event(self, msg):
        if msg.data.strip().lower() == 'start':
            self.mux.resync(self.now())

    # ---- outputs ------------------------------------------------------------------------------
    def _tick(self):
        now = self.now()
        # Heartbeat: keep at least rate_hz on the robot command (holds, blends, watchdog changes),
        # but no extra sends while a source is commanding at about that rate: the recorded
        # executed-action timeline should run at the control rate, not twice it.
        period = 0.5 / self.cfg.rate_hz if self.mux.mode == HOLD else 1.5 / self.cfg.rate_hz
        if now - self.mux.last_sent_t >= period or \
                self.mux.desired(now)[0] != self.mux.mode:
            self._send(now)

    def _send(self, now):
        prev_mode = self.mux.mode
        out = self.mux.step(now)
        self._log_events()
        if out is not None:
            data = [float(x) for x in out.command]
            self.cmd_pub.publish(Float64MultiArray(data=data))
            js = JointState()
            js.header.stamp = self.get_clock().now().to_msg()
            js.header.frame_id = out.source
            js.name = list(self.cfg.joint_names)
            js.position = data
            self.exec_pub.publish(js)
        if self.mux.mode != prev_mode:
            self._publish_status(now)

    def _log_events(self):
        now = self.now()
        for level, message in self.mux.drain_events():
            # rclpy forbids one call site logging at two severities: two call sites.
            if level == 'warn' and message.startswith('source -> '):
                self._warn_throttled(now, message)      # source flips can repeat at 10 Hz
            elif level == 'warn':
                self.get_logger().warning(message)      # e-stop, re-arm: every one, never throttled
            else:
                self.get_logger().info(message)

    def _warn_throttled(self, now, key, detail=''):
        """The first occurrence of a warning at once, repeats at most every WARN_REPEAT_S with their count
        (a random-init policy sends out-of-range commands at 10 Hz: one line each would bury the log)."""
        last = self._warned.get(key)
        if last is not None and now - last[0] < WARN_REPEAT_S:
            last[1] += 1
            return
        repeats = '' if last is None or not last[1] else f' [{last[1]} more in the last {now - last[0]:.0f} s]'
        self._warned[key] = [now, 0]
        self.get_logger().warning(key + (f': {detail}' if detail else '') + repeats)

    def _publish_status(self, now):
        self.status_pub.publish(String(data=json.dumps(self.mux.status(now))))

    def _publish_diagnostics(self):
        now = self.now()
        st = self.mux.status(now)
        self._publish_status(now)
        if st['source'] == HOLD and st['reason'] not in WAITING:
            level = ERROR if st['estop'] else WARN
        elif st['dropped']:
            level = WARN
        else:
            level = OK
        if self.mux.measured is None:
            level, message = WARN, 'no /joint_states yet: not sending'
        else:
            message = f"source={st['source']}" + (f" ({st['reason']})" if st['reason'] else '')
        self.diag.publish(level, message, {k: json.dumps(v) if isinstance(v, dict) else v
                                           for k, v in st.items()})


def main(args=None):
    run_node(lambda: CommandMuxNode(), args)


if __name__ == '__main__':
    main()
