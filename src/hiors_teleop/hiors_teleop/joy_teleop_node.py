"""Gamepad teleop from sensor_msgs/Joy (the ROS `joy` driver's output, /joy).

Each Joy message is mapped at once (lowest takeover latency; button edges never missed). The target
moves only when a Joy message arrives: by the stick value times the time since the previous message
(at most `stale_after_periods` expected periods), as teleop_twist_joy publishes one twist per Joy.
So when the pad is unplugged mid-motion the target stops with its last message. The `joy` driver
re-sends its state at `autorepeat_rate` (20 Hz by default); its period is measured from its own
arrivals, and after `stale_after_periods` periods (or device_timeout_s) the pad counts as gone: no
more commands, /hiors/teleop/stale true, the mux holds at once (not the policy) until Joy comes back.
"""
import dataclasses
from dataclasses import dataclass, field

from sensor_msgs.msg import Joy

from hiors_common.node_main import run_node
from hiors_common.topics import JOY

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .joy_mapping import JoyMapConfig, JoyMapper
from .teleop_core import InputCadence


@dataclass
class JoyTeleopConfig(JoyMapConfig, TeleopNodeConfig):
    # sensor_msgs/Joy from the ros2 `joy` driver (SDL game-controller layout, see joy_mapping); run
    # the driver with autorepeat_rate > 1/device_timeout_s so a pad held still keeps sending.
    joy_topic: str = JOY
    stale_after_periods: float = field(default=3.0, metadata={
        'doc': 'the pad counts as unplugged this many Joy periods after the last message (at most '
               'device_timeout_s; device_timeout_s alone until the period is measured)'})


class JoyTeleopNode(DeviceTeleopNode):
    device_name = 'joy'

    def __init__(self):
        super().__init__('joy_teleop', JoyTeleopConfig)
        self.mapper = JoyMapper(self.cfg)
        self._last = None
        self.cadence = InputCadence(self.cfg.device_timeout_s if self.cfg.device_timeout_s > 0 else float('inf'))
        self.create_subscription(Joy, self.cfg.joy_topic, self._on_joy, 10)
        self.get_logger().info(f'joy teleop on {self.cfg.joy_topic} ({self.cfg.mode} mode); hold button '
                               f'{self.cfg.deadman_button} to take over')

    def _on_joy(self, msg):
        now = self.now()
        inp = self.mapper.map(msg.axes, msg.buttons, self.core.mode)
        prev = self.cadence.last_t
        self.cadence.arrived(now)
        # integrate over the time since the previous message, never more than a stale gap
        inp.dt = 0.0 if prev is None else min(now - prev, self.cadence.limit(self.cfg.stale_after_periods))
        self._last = inp
        with self._lock:
            self.healthy, self.health_reason = True, ''
            self.apply(now, inp)

    def poll(self, now):
        if self._last is None:
            return None, False, f'no Joy message on {self.cfg.joy_topic} yet'
        if self.cadence.late(now, self.cfg.stale_after_periods):
            period = self.cadence.period()
            return None, False, (f'no Joy message for {now - self.cadence.last_t:.2f} s (period '
                                 + ('unknown' if period is None else f'{1000 * period:.0f} ms')
                                 + '; pad unplugged or joy driver stopped; needs the joy autorepeat_rate > '
                                 '1/device_timeout_s)')
        # between messages: the same target (a heartbeat for the mux), no integration
        return dataclasses.replace(self._last, events=[], joint_vel=None, twist=None, gripper_vel=None), True, ''


def main(args=None):
    run_node(lambda: JoyTeleopNode(), args)


if __name__ == '__main__':
    main()
