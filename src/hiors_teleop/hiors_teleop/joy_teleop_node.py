"""Gamepad teleop from sensor_msgs/Joy (the ROS `joy` driver's output, /joy).

Each Joy message is mapped at once (lowest takeover latency; button edges never missed) and the
latest stick state keeps being integrated at rate_hz. The `joy` driver re-sends its state at
`autorepeat_rate` (20 Hz by default), so a missing message is seen within a period: the target stops
moving `pause_after_periods` periods after the last Joy (period measured from the driver's own
rate), and after `stale_after_periods` (or device_timeout_s) the pad counts as gone: no more
commands, /hiors/teleop/stale true, the mux holds at once (not the policy) until Joy comes back.
"""
import dataclasses
from dataclasses import dataclass, field

from sensor_msgs.msg import Joy

from hiors_common.node_main import run_node

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .joy_mapping import JoyMapConfig, JoyMapper
from .teleop_core import InputCadence


@dataclass
class JoyTeleopConfig(JoyMapConfig, TeleopNodeConfig):
    joy_topic: str = '/joy'
    pause_after_periods: float = field(default=1.2, metadata={
        'doc': 'the sticks stop moving the target this many Joy periods after the last message'})
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
        self._last = inp
        self.cadence.arrived(now)
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
        if self.cadence.late(now, self.cfg.pause_after_periods):     # late: hold the target, still ours
            return dataclasses.replace(self._last, events=[], joint_vel=None, twist=None, gripper_vel=None), True, ''
        return dataclasses.replace(self._last, events=[]), True, ''


def main(args=None):
    run_node(lambda: JoyTeleopNode(), args)


if __name__ == '__main__':
    main()
