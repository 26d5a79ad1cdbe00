"""Gamepad teleop from sensor_msgs/Joy (the ROS `joy` driver's output, /joy).

Each Joy message is mapped at once (lowest takeover latency; button edges never missed) and the
latest stick state keeps being integrated at rate_hz. The `joy` driver re-sends its state at
`autorepeat_rate` (20 Hz by default): no Joy for device_timeout_s means the pad or its driver is
gone/frozen -> no more commands (the mux holds, not the policy) until Joy messages come back.
"""
import dataclasses
from dataclasses import dataclass

from sensor_msgs.msg import Joy

from hiors_common.node_main import run_node

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .joy_mapping import JoyMapConfig, JoyMapper


@dataclass
class JoyTeleopConfig(JoyMapConfig, TeleopNodeConfig):
    joy_topic: str = '/joy'


class JoyTeleopNode(DeviceTeleopNode):
    device_name = 'joy'

    def __init__(self):
        super().__init__('joy_teleop', JoyTeleopConfig)
        self.mapper = JoyMapper(self.cfg)
        self._last = None
        self._last_t = None
        self.create_subscription(Joy, self.cfg.joy_topic, self._on_joy, 10)
        self.get_logger().info(f'joy teleop on {self.cfg.joy_topic} ({self.cfg.mode} mode); hold button '
                               f'{self.cfg.deadman_button} to take over')

    def _on_joy(self, msg):
        now = self.now()
        inp = self.mapper.map(msg.axes, msg.buttons, self.core.mode)
        self._last, self._last_t = inp, now
        with self._lock:
            self.healthy, self.health_reason = True, ''
            self.apply(now, inp)

    def poll(self, now):
        if self._last is None:
            return None, False, f'no Joy message on {self.cfg.joy_topic} yet'
        age = now - self._last_t
        if self.cfg.device_timeout_s > 0 and age > self.cfg.device_timeout_s:
            return None, False, (f'no Joy message for {age:.1f} s (pad unplugged or joy driver stopped; '
                                 'needs the joy autorepeat_rate > 1/device_timeout_s)')
        return dataclasses.replace(self._last, events=[]), True, ''


def main(args=None):
    run_node(lambda: JoyTeleopNode(), args)


if __name__ == '__main__':
    main()
