"""Dashboard node: subscribes to episode events, intervention, /diagnostics and the policy
version, and serves a live web page (127.0.0.1 by default)."""
import dataclasses

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from std_msgs.msg import Bool, String

from hiors_common.diagnostics import level_int
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.topics import DIAGNOSTICS, EPISODE_EVENT, INTERVENTION, POLICY_VERSION, latched_qos

from .dashboard_core import DashboardState, start_server


@dataclasses.dataclass
class DashboardConfig:
    host: str = dataclasses.field(default='127.0.0.1', metadata={'doc': 'HTTP bind address'})
    port: int = dataclasses.field(default=8088, metadata={'doc': 'HTTP port (0 = pick a free one)'})
    max_points: int = dataclasses.field(default=2000, metadata={'doc': 'points kept per time series'})


class DashboardNode(Node):
    def __init__(self):
        super().__init__('dashboard')
        self.cfg = declare_config(self, DashboardConfig)
        self.state = DashboardState(max_points=self.cfg.max_points)
        self.create_subscription(String, EPISODE_EVENT, self._on_event, 50)
        self.create_subscription(Bool, INTERVENTION, lambda m: self.state.intervention(m.data), 50)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS, self._on_diag, 50)
        self.create_subscription(String, POLICY_VERSION,
                                 lambda m: self.state.policy_version_msg(m.data), latched_qos())
        self.server, self.url = start_server(self.state, self.cfg.host, self.cfg.port)
        self.get_logger().info(f'dashboard at {self.url}')

    def _on_event(self, msg):
        if not self.state.episode_event(msg.data):
            self.get_logger().warning(f'unknown episode event {msg.data!r}')

    def _on_diag(self, msg):
        self.state.diagnostics((s.name, level_int(s.level), s.message, [(kv.key, kv.value) for kv in s.values])
                               for s in msg.status)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def main(args=None):
    run_node(lambda: DashboardNode(), args)


if __name__ == '__main__':
    main()
