"""3Dconnexion SpaceMouse teleop, read from Linux hidraw (/dev/hidrawN; the same reports hidapi
returns, without a compiled dependency) or, where the `hid` module (hidapi) is installed and no
hidraw node is found, through hidapi. Decoding and takeover logic: spacemouse_decoding.

Moving the cap takes over; it hands back after auto_release_s at rest; button 1 makes a takeover
sticky, button 2 toggles the gripper. Unplug (read error / EOF) mid-takeover -> no commands, the mux
holds (not the policy); the device is re-opened every reconnect_period_s, so a replug recovers.
Episode labels come from another device (keyboard, gamepad) or the /hiors/episode/* services.
"""
import dataclasses
import os
from dataclasses import dataclass, field

from hiors_common.node_main import run_node

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .spacemouse_decoding import VENDOR_IDS, SpaceMouseDecoder, SpaceMouseMapConfig, SpaceMouseMapper, find_hidraw


@dataclass
class SpaceMouseTeleopConfig(SpaceMouseMapConfig, TeleopNodeConfig):
    device_path: str = field(default='', metadata={
        'doc': "/dev/hidrawN ('' = first 3Dconnexion device; needs read access: a udev rule)"})
    # bytes of a button report (id 3, id byte included): cuts a byte stream (replay, FIFO) into
    # reports (hidraw delivers one report per read)
    button_report_len: int = 3
    reconnect_period_s: float = 1.0  # after an unplug / open error, retry opening this often
    device_timeout_s: float = 0.0    # the cap sends nothing at rest: silence is not a fault
    # 'ee': the cap is a 6-D input, a base-frame twist via the robot's FK/IK (hiors_sim.kinematics);
    # 'joint' maps its 6 axes to joints 1..6
    mode: str = 'ee'


class _HidrawSource:
    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)

    def read_all(self) -> list[bytes]:
        out = []
        while True:
            try:
                buf = os.read(self.fd, 64)
            except BlockingIOError:
                return out
            if not buf:
                raise OSError(f'{self.path}: end of file (device gone)')
            out.append(buf)

    def close(self):
        os.close(self.fd)


class _HidapiSource:
    def __init__(self):
        import hid
        for info in hid.enumerate():
            if info['vendor_id'] in VENDOR_IDS:
                self.dev = hid.device()
                self.dev.open_path(info['path'])
                self.dev.set_nonblocking(True)
                self.path = (info['path'].decode(errors='replace') if isinstance(info['path'], bytes)
                             else str(info['path']))
                return
        raise OSError('no 3Dconnexion device found by hidapi')

    def read_all(self) -> list[bytes]:
        out = []
        while True:
            data = self.dev.read(64)
            if not data:
                return out
            out.append(bytes(data))

    def close(self):
        self.dev.close()


class SpaceMouseTeleopNode(DeviceTeleopNode):
    device_name = 'spacemouse'

    def __init__(self):
        super().__init__('spacemouse_teleop', SpaceMouseTeleopConfig)
        self.mapper = SpaceMouseMapper(self.cfg)
        self.decoder = SpaceMouseDecoder(self.cfg.button_report_len)
        self.src = None
        self._next_try = 0.0
        self._error = ''
        self.start_waker()

    def wait_handle(self):
        src = self.src
        return getattr(src, 'fd', None) if src is not None else None

    def _open(self):
        if self.cfg.device_path:
            return _HidrawSource(self.cfg.device_path)
        found = find_hidraw()
        if found:
            return _HidrawSource(found[0][0])
        try:
            return _HidapiSource()
        except ImportError:
            raise OSError('no 3Dconnexion hidraw device (and hidapi is not installed)') from None

    def poll(self, now):
        if self.src is None:
            if now < self._next_try:
                return None, False, self._error or 'no device'
            self._next_try = now + self.cfg.reconnect_period_s
            try:
                self.src = self._open()
            except OSError as exc:
                self._error = f'cannot open SpaceMouse: {exc}'
                return None, False, self._error
            self.decoder = SpaceMouseDecoder(self.cfg.button_report_len)   # fresh state after replug
            self.get_logger().info(f'SpaceMouse: {self.src.path}')
        toggle = False
        try:
            for buf in self.src.read_all():
                for report in self.decoder.split(buf):
                    if self.decoder.feed(report):
                        inp = self.mapper.map(self.decoder.axes, self.decoder.buttons, now, self.core.mode)
                        toggle |= inp.gripper_toggle
        except OSError as exc:
            try:
                self.src.close()
            except OSError:
                pass
            self.src = None
            return None, False, f'SpaceMouse read failed ({exc}); retrying every {self.cfg.reconnect_period_s:g} s'
        inp = self.mapper.map(self.decoder.axes, self.decoder.buttons, now, self.core.mode)
        return dataclasses.replace(inp, gripper_toggle=toggle or inp.gripper_toggle), True, ''

    def close(self):
        self.stop_waker()
        if self.src is not None:
            self.src.close()
            self.src = None


def main(args=None):
    run_node(lambda: SpaceMouseTeleopNode(), args)


if __name__ == '__main__':
    main()
