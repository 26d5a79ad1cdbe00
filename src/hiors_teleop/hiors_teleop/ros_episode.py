"""ROS adapter for episode control: the event publisher, the reset client, and (optionally) the
Trigger services /hiors/episode/{start,success,failure,abort,reset}. Used by the mux node (which
hosts the services, since it always runs) and by every device node (which publish directly)."""
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hiors_common.topics import EPISODE_EVENT, SIM_RESET_SERVICE, event_qos

from .episode import ACTIONS, EVENTS, normalise


class EpisodeControl:
    def __init__(self, node, event_topic: str = EPISODE_EVENT, reset_service: str = SIM_RESET_SERVICE,
                 services_prefix: str | None = None):
        self.node = node
        self.pub = node.create_publisher(String, event_topic, event_qos())
        self.reset_service = reset_service
        self._reset_client = node.create_client(Trigger, reset_service) if reset_service else None
        self._services = []
        if services_prefix:
            for action in ACTIONS:
                self._services.append(node.create_service(
                    Trigger, f'{services_prefix.rstrip("/")}/{action}',
                    lambda req, resp, action=action: self._on_service(action, resp)))

    def send(self, action: str) -> tuple[bool, str]:
        """Publish an event, or for 'reset' start an asynchronous reset call (never blocks)."""
        a = normalise(action)
        if a in EVENTS:
            self.pub.publish(String(data=a))
            self.node.get_logger().info(f'episode event: {a}')
            return True, f'published {a}'
        if self._reset_client is None:
            return False, 'no reset service configured'
        if not self._reset_client.service_is_ready():
            msg = f'reset service {self.reset_service} is not available'
            self.node.get_logger().warning(msg)
            return False, msg
        future = self._reset_client.call_async(Trigger.Request())
        future.add_done_callback(self._reset_done)
        return True, f'reset requested from {self.reset_service}'

    def _reset_done(self, future):
        try:
            resp = future.result()
        except Exception as exc:  # noqa: BLE001 - report any transport error
            self.node.get_logger().error(f'reset call failed: {exc!r}')
            return
        log = self.node.get_logger()
        if resp.success:
            log.info(f'reset done: {resp.message}')
        else:
            log.error(f'reset failed: {resp.message}')

    def _on_service(self, action, resp):
        ok, msg = self.send(action)
        resp.success, resp.message = ok, msg
        return resp
