"""ROS 2 node around PegInsertionSim: joint states, cameras, task state and success out;
ros2_control-style position commands in; reset as a service."""
from dataclasses import dataclass, field
import time

import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from hiors_common.diagnostics import DiagnosticsPublisher, OK, WARN
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.topics import (JOINT_STATES, JOINT_TRAJECTORY, ROBOT_COMMAND, SIM_RESET_SERVICE, SIM_SUCCESS,
                                 SIM_TASK_STATE, camera_topic, reliable_qos)

from .scene import JOINT_NAMES
from .sim_core import PegInsertionSim, SimConfig
from .tasks import task_config

COMMAND_TIMING_LOG_PREFIX = 'command timing:'   # per-episode log line (bench_graph_parity reads it)


@dataclass
class SimNodeConfig:
    control_rate_hz: float = SimConfig.control_rate_hz   # control (and physics step) rate; core SimConfig's default
    camera_rate_hz: float = 0.0          # 0 = a frame every control tick
    # cameras rendered, each published (rgb8) on camera_topic(name) = /camera/<name>/image_raw
    # (hiors_common.topics); the scene has 'front' and 'wrist'
    cameras: list[str] = field(default_factory=lambda: ['front', 'wrist'])
    camera_width: int = SimConfig.camera_width           # image width (px); core SimConfig's default
    camera_height: int = SimConfig.camera_height         # image height (px); core SimConfig's default
    render: bool = True                  # false: no rendering and no camera topics
    # scene seed: the first scene uses it; the scene after reset k uses
    # seed * 100003 + (k - 1) // repeat_each + 1
    seed: int = 0
    # a named variant (hiors_sim.tasks): randomisation and clearance; peg_insert (wide) |
    # peg_insert_narrow
    task: str = 'peg_insert'
    # per side; 0 = the task's (peg_insert: 1.5 mm, a 2 cm peg in a 2.3 cm hole)
    clearance_m: float = 0.0
    frame_id: str = 'world'              # header.frame_id of /joint_states and the task-state PoseArray
    # >1: reuse each episode's scene this many times in a row (test-time retries of one task instance)
    repeat_each: int = 1


def _pose(pos, quat) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in pos)
    p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (float(v) for v in quat)
    return p


class SimNode(Node):
    def __init__(self):
        super().__init__('sim')
        self.cfg = declare_config(self, SimNodeConfig)
        sim_cfg = SimConfig(**task_config(self.cfg.task))
        sim_cfg.control_rate_hz = self.cfg.control_rate_hz
        sim_cfg.camera_width, sim_cfg.camera_height = self.cfg.camera_width, self.cfg.camera_height
        if self.cfg.clearance_m > 0:
            sim_cfg.clearance_m = self.cfg.clearance_m
        self.sim = PegInsertionSim(sim_cfg)
        self.episode = 0
        self.sim.reset(self.cfg.seed)
        qos = reliable_qos(10)
        self.pub_joints = self.create_publisher(JointState, JOINT_STATES, qos)
        self.pub_cams = {name: self.create_publisher(Image, camera_topic(name), reliable_qos(5))
                         for name in self.cfg.cameras} if self.cfg.render else {}
        self.pub_success = self.create_publisher(Bool, SIM_SUCCESS, qos)
        self.pub_task = self.create_publisher(PoseArray, SIM_TASK_STATE, qos)
        self.create_subscription(Float64MultiArray, ROBOT_COMMAND, self._on_command, 10)
        self.create_subscription(JointTrajectory, JOINT_TRAJECTORY, self._on_trajectory, 10)
        self.create_service(Trigger, SIM_RESET_SERVICE, self._on_reset)
        self.diag = DiagnosticsPublisher(self, 'hiors_sim')
        period = 1.0 / self.cfg.control_rate_hz
        cam_rate = self.cfg.camera_rate_hz or self.cfg.control_rate_hz
        self.render_every = max(1, int(round(self.cfg.control_rate_hz / cam_rate)))
        self._wall0 = time.monotonic()
        self._sim0 = self.sim.time
        self._late = 0
        self._timing_at_reset = (0, 0, 0)   # (ticks, ticks_without_command, overwritten) at the last reset
        self._frames = 0
        self._last_diag = 0.0
        self.create_timer(period, self._tick)
        self.get_logger().info(
            f'sim ready: {self.cfg.control_rate_hz:.0f} Hz control, {self.sim.substeps} substeps, '
            f'cameras {list(self.pub_cams)} {self.cfg.camera_width}x{self.cfg.camera_height}')

    def _on_command(self, msg: Float64MultiArray):
        if not self.sim.set_command(msg.data):
            self.get_logger().warning(f'ignored command {list(msg.data)[:8]} (need 7 finite values)',
                                   throttle_duration_sec=2.0)

    def _on_trajectory(self, msg: JointTrajectory):
        if not msg.points:
            return
        target = self.sim.target.copy()
        index = {n: i for i, n in enumerate(JOINT_NAMES)}
        point = msg.points[0]
        for name, value in zip(msg.joint_names, point.positions):
            if name in index:
                target[index[name]] = value
        self.sim.set_command(target)

    def _on_reset(self, _req, resp):
        if self.episode > 0:
            self._log_command_timing()
        self.episode += 1
        seed = self.cfg.seed * 100003 + (self.episode - 1) // max(1, self.cfg.repeat_each) + 1
        self.sim.reset(seed)
        self._timing_at_reset = (0, self.sim.ticks_without_command, self.sim.overwritten_commands)
        self._wall0, self._sim0 = time.monotonic(), self.sim.time
        ts = self.sim.task_state()
        resp.success = True
        resp.message = (f'episode seed {seed}: peg {np.round(ts["peg_pos"], 3).tolist()} '
                        f'hole {np.round(ts["hole_pos"], 3).tolist()}')
        return resp

    def _log_command_timing(self):
        counts = (self.sim.ticks, self.sim.ticks_without_command, self.sim.overwritten_commands)
        ticks, missed, overwritten = (a - b for a, b in zip(counts, self._timing_at_reset))
        self.get_logger().info(f'{COMMAND_TIMING_LOG_PREFIX} episode {self.episode}: {ticks} ticks, '
                               f'{missed} without a new command, {overwritten} commands overwritten')

    def _tick(self):
        self.sim.step()
        stamp = self.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = stamp
        js.header.frame_id = self.cfg.frame_id
        js.name = list(JOINT_NAMES)
        js.position = self.sim.joint_positions().tolist()
        js.velocity = self.sim.joint_velocities().tolist()
        self.pub_joints.publish(js)
        if self.pub_cams and self.sim.ticks % self.render_every == 0:
            for name, pub in self.pub_cams.items():
                img = self.sim.render(name)
                msg = Image()
                msg.header.stamp = stamp
                msg.header.frame_id = name
                msg.height, msg.width = img.shape[:2]
                msg.encoding = 'rgb8'
                msg.step = img.shape[1] * 3
                msg.data = img.tobytes()
                pub.publish(msg)
            self._frames += 1
        self.pub_success.publish(Bool(data=self.sim.success()))
        ts = self.sim.task_state()
        pa = PoseArray()
        pa.header.stamp = stamp
        pa.header.frame_id = self.cfg.frame_id
        pa.poses = [_pose(ts['peg_pos'], ts['peg_quat']), _pose(ts['hole_pos'], ts['hole_quat'])]
        self.pub_task.publish(pa)
        self._report()

    def _report(self):
        now = time.monotonic()
        if now - self._last_diag < 1.0:
            return
        self._last_diag = now
        wall = now - self._wall0
        sim_t = self.sim.time - self._sim0
        rtf = sim_t / wall if wall > 0 else 1.0
        level, text = OK, 'running'
        if wall > 5.0 and rtf < 0.95:
            level, text = WARN, f'behind real time (factor {rtf:.2f})'
            self.get_logger().warning(text, throttle_duration_sec=10.0)
        self.diag.publish(level, text, {'real_time_factor': f'{rtf:.3f}', 'ticks': self.sim.ticks,
                                        'camera_frames': self._frames, 'episode': self.episode,
                                        'bad_commands': self.sim.bad_commands,
                                        'velocity_limited_ticks': self.sim.velocity_limited,
                                        'ticks_without_command': self.sim.ticks_without_command,
                                        'overwritten_commands': self.sim.overwritten_commands,
                                        'success': self.sim.success()})

    def close(self):
        if self.episode > 0:
            self._log_command_timing()
        self.sim.close()


def main(args=None):
    run_node(SimNode, args)


if __name__ == '__main__':
    main()
