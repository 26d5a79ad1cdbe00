"""VR teleop: serves the WebXR page (http://127.0.0.1:<port>/) and reads the controller stream
from its websocket. Trigger held = takeover; the end-effector target follows the controller from
where the gripper was at the press (FK/IK of the robot model, hiors_sim.kinematics).

The page sends at the headset frame rate (desktop/emulated mode: 60 Hz). No pose for
device_timeout_s, or the page disconnecting, mid-takeover -> no commands: the mux holds (not the
policy); a reconnecting page resumes from where the robot held.
"""
import json
from dataclasses import dataclass, field

from hiors_common.node_main import run_node

from .device_node import DeviceTeleopNode, TeleopNodeConfig
from .vr_mapping import VRMapConfig, VRMapper
from .vr_server import VRServer


@dataclass
class VRTeleopConfig(VRMapConfig, TeleopNodeConfig):
    host: str = field(default='127.0.0.1', metadata={'doc': 'listen address (keep 127.0.0.1 unless you '
                                                            'know you need the LAN)'})
    port: int = field(default=8765, metadata={
        'doc': 'http + websocket port (0 = any free port): open http://<host>:<port>/ in a WebXR browser '
               '(desktop: emulated controller)'})
    mode: str = 'ee_abs'   # the only VR mode: absolute end-effector targets via the robot's FK/IK


class VRTeleopNode(DeviceTeleopNode):
    device_name = 'vr'

    def __init__(self):
        super().__init__('vr_teleop', VRTeleopConfig)
        if self.core.mode != 'ee_abs':
            raise ValueError("vr teleop works in mode 'ee_abs' only")
        self.mapper = VRMapper(self.cfg)
        self.server = VRServer(self.cfg.host, self.cfg.port, trigger_threshold=self.cfg.trigger_threshold).start()
        self._was_healthy = False
        self._hello_logged = None
        self.get_logger().info(f'VR teleop page: {self.server.url} (open it in a WebXR browser; '
                               'without a headset it runs an emulated controller)')
        # machine-readable line for launchers/tests that asked for port 0
        self.get_logger().info('VR_SERVER ' + json.dumps({'url': self.server.url, 'port': self.server.port}))
        self.start_waker()

    def wait_handle(self):
        return self.server.changed     # set on a trigger / button change or an event: takeover edges

    def poll(self, now):
        sample, t, events, clients = self.server.take()
        hello = self.server.hello
        if hello is not None and hello is not self._hello_logged:
            self._hello_logged = hello
            self.get_logger().info(f"VR client: mode={hello['mode']} agent={hello['agent'][:160]}")
        healthy, reason = True, ''
        if clients == 0:
            healthy, reason = False, 'no VR page connected'
        elif sample is None:
            healthy, reason = False, 'VR page connected, no controller pose yet'
        elif self.cfg.device_timeout_s > 0 and now - t > self.cfg.device_timeout_s:
            healthy, reason = False, f'no controller pose for {now - t:.1f} s (headset asleep / tab hidden?)'
        if healthy and not self._was_healthy:
            self.mapper.reanchor()      # the core restarts from the held position: anchor anew
        self._was_healthy = healthy
        self.server.set_status(takeover=self.core.takeover, healthy=healthy, message=reason)
        if not healthy:
            if events:     # labels from the page buttons still count without a controller
                for action in events:
                    self.episode.send(action)
            return None, False, reason
        inp = self.mapper.map(sample)
        inp.events = list(inp.events) + events
        return inp, True, ''

    def close(self):
        self.stop_waker()
        self.server.stop()


def main(args=None):
    run_node(lambda: VRTeleopNode(), args)


if __name__ == '__main__':
    main()
