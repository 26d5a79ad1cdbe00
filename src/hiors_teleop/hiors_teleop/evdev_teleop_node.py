"""Gamepad teleop straight from a Linux evdev device (/dev/input/event*), for machines without the
ROS joy driver. Uses python-evdev to open/read the device; decoding is evdev_decoding (pure) and the
button/axis map is the Joy one (joy_mapping), so one YAML layout serves both.

Events are read without blocking at rate_hz. Unplug (read error) mid-takeover -> no commands, the
mux holds (not the policy); the node retries opening every reconnect_period_s, so a replug recovers.
evdev devices only report changes, so a silent pad is not "frozen" (device_timeout_s = 0).
"""
import dataclasses
import errno
from dataclasses import dataclass, field

from hiors_common.node_main import run_node

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .evdev_decoding import EvdevGamepadDecoder, EvdevMapConfig
from .joy_mapping import JoyMapConfig, JoyMapper


@dataclass
class EvdevTeleopConfig(EvdevMapConfig, JoyMapConfig, TeleopNodeConfig):
    """Button/axis indices are the Joy ones (joy_mapping's SDL layout); axis_codes / button_codes
    say which evdev code feeds each index."""
    device_path: str = field(default='', metadata={
        'doc': "/dev/input/eventN ('' = the first device with sticks and BTN_SOUTH)"})
    device_name_contains: str = field(default='', metadata={'doc': 'pick the first device whose name has this'})
    reconnect_period_s: float = 1.0      # after an unplug / open error, retry opening this often
    grab: bool = field(default=False, metadata={'doc': 'exclusive access (other programs stop seeing the pad)'})
    device_timeout_s: float = 0.0        # evdev reports changes only: a silent pad is not frozen


def find_gamepad(path: str = '', name_contains: str = ''):
    """Open the configured device, or the first one with sticks and a south/gamepad button."""
    import evdev
    from evdev import ecodes
    if path:
        return evdev.InputDevice(path)
    for p in evdev.list_devices():
        try:
            dev = evdev.InputDevice(p)
        except OSError:
            continue
        caps = dev.capabilities()
        if name_contains:
            if name_contains.lower() in dev.name.lower():
                return dev
        elif ecodes.EV_ABS in caps and ecodes.BTN_SOUTH in caps.get(ecodes.EV_KEY, []):
            return dev
        dev.close()
    raise OSError(errno.ENODEV, 'no gamepad found' + (f' named *{name_contains}*' if name_contains else ''))


class EvdevTeleopNode(DeviceTeleopNode):
    device_name = 'evdev'

    def __init__(self):
        super().__init__('evdev_teleop', EvdevTeleopConfig)
        self.mapper = JoyMapper(self.cfg)
        self.dev = None
        self.decoder = None
        self._next_try = 0.0
        self._last = None
        self._open_error = ''
        self.start_waker()

    def wait_handle(self):
        dev = self.dev
        return dev.fd if dev is not None else None

    def _open(self):
        dev = find_gamepad(self.cfg.device_path, self.cfg.device_name_contains)
        absinfo = {}
        for code in self.cfg.axis_codes:
            try:
                info = dev.absinfo(code)
                absinfo[code] = (info.min, info.max)
            except (OSError, KeyError):
                pass
        self.decoder = EvdevGamepadDecoder(self.cfg.axis_codes, self.cfg.button_codes, self.cfg.axis_invert,
                                           absinfo)
        self._resync(dev)
        if self.cfg.grab:
            dev.grab()
        self.dev = dev
        self.get_logger().info(f'evdev gamepad: {dev.path} "{dev.name}"')

    def _resync(self, dev):
        values = {}
        for code in self.cfg.axis_codes:
            try:
                values[code] = dev.absinfo(code).value
            except (OSError, KeyError):
                pass
        self.decoder.set_state(values, dev.active_keys())

    def _drop(self, why):
        if self.dev is not None:
            try:
                self.dev.close()
            except OSError:
                pass
        self.dev = None
        self._last = None
        return None, False, why

    def poll(self, now):
        if self.dev is None:
            if now < self._next_try:
                return None, False, self._open_error or 'no device'
            self._next_try = now + self.cfg.reconnect_period_s
            try:
                self._open()
            except (OSError, ImportError) as exc:
                self._open_error = f'cannot open gamepad: {exc}'
                return None, False, self._open_error
        events = []
        try:
            while True:
                try:
                    batch = list(self.dev.read())
                except BlockingIOError:
                    break
                for ev in batch:
                    frame = self.decoder.feed(ev.type, ev.code, ev.value)
                    if self.decoder.needs_resync:
                        self._resync(self.dev)
                        frame = (list(self.decoder.axes), list(self.decoder.buttons))
                    if frame is not None:
                        inp = self.mapper.map(frame[0], frame[1], self.core.mode)
                        events += inp.events
                        self._last = inp
        except OSError as exc:   # ENODEV: unplugged
            return self._drop(f'gamepad read failed ({exc}); retrying every {self.cfg.reconnect_period_s:g} s')
        if self._last is None:
            frame = (list(self.decoder.axes), list(self.decoder.buttons))
            self._last = self.mapper.map(frame[0], frame[1], self.core.mode)
        return dataclasses.replace(self._last, events=events), True, ''

    def close(self):
        self.stop_waker()
        with self._lock:
            self._drop('closing')


def main(args=None):
    run_node(lambda: EvdevTeleopNode(), args)


if __name__ == '__main__':
    main()

