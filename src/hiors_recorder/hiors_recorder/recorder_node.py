"""ROS 2 node: records every episode (start .. success/failure/abort on /hiors/episode/event) as a
rosbag2 (MCAP) bag plus episode.json. Subscriptions take the serialized CDR bytes (raw=True),
which go into the bag unchanged; the disk writes run on the recorder core's writer thread."""
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from hiors_common.diagnostics import DiagnosticsPublisher
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.topics import best_effort_qos, event_qos, latched_qos, reliable_qos

from . import bagio
from .recorder import EpisodeRecorder, RecorderConfig, check_directory, recover_unfinished


def _msg_class(msgtype: str):
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Bool, Float64MultiArray, String
    return {bagio.JOINT_STATE: JointState, bagio.IMAGE: Image, bagio.BOOL: Bool,
            bagio.STRING: String, bagio.FLOAT64_MULTI_ARRAY: Float64MultiArray}[msgtype]


class RecorderNode(Node):
    def __init__(self):
        super().__init__('recorder')
        self.cfg = declare_config(self, RecorderConfig)
        log = self.get_logger()
        self.rec = None
        topics = self.cfg.topics()
        problem = check_directory(_root(self.cfg), self.cfg.min_free_mb)
        if problem:
            log.error(f'episodes cannot be recorded: {problem}')
        elif self.cfg.recover_on_start:
            results = recover_unfinished(self.cfg.episode_dir, log, topics)
            if results:
                log.warning('unfinished episodes found at start: ' +
                            ', '.join(f'{name} {what}' for name, what, _ in results))
        self.rec = EpisodeRecorder(self.cfg, log=log)
        self.diag = DiagnosticsPublisher(self)
        sensor_qos = (reliable_qos if self.cfg.reliable else best_effort_qos)(self.cfg.qos_depth)
        latched, events = latched_qos(), event_qos()
        self._subs = {}
        for topic, msgtype in self.rec.topic_types.items():
            if topic == topics['policy_version']:
                qos = latched
            elif topic in (topics['event'], topics['intervention'], topics['executed_action']):
                qos = events
            else:
                qos = sensor_qos
            self._subscribe(topic, msgtype, qos)
        # A reliable / transient-local subscription silently matches no best-effort / volatile
        # publisher: check the publishers now and then and relax our QoS to match them.
        self.create_timer(2.0, self._match_publisher_qos)
        self._last_message = None
        self.create_timer(self.cfg.diagnostics_period_s, self._publish_status)
        self.create_timer(0.05, lambda: self.rec.tick())
        log.info(f'recording episodes under {self.rec.root}: {len(self._subs)} topics '
                 f'(cameras: {", ".join(self.cfg.cameras) or "none"})')

    def _subscribe(self, topic, msgtype, qos):
        old = self._subs.pop(topic, None)
        if old is not None:
            self.destroy_subscription(old[0])
        def callback(raw, info, topic=topic):
            self.rec.on_message(topic, raw, src_ns=info.get('source_timestamp') or None)
        sub = self.create_subscription(_msg_class(msgtype), topic, callback, qos, raw=True)
        self._subs[topic] = (sub, msgtype, qos)

    def _match_publisher_qos(self):
        for topic, (_sub, msgtype, qos) in list(self._subs.items()):
            pubs = self.get_publishers_info_by_topic(topic)
            relax = []
            new = QoSProfile(depth=qos.depth, history=qos.history, reliability=qos.reliability,
                             durability=qos.durability)
            if qos.reliability == ReliabilityPolicy.RELIABLE and any(
                    p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in pubs):
                new.reliability = ReliabilityPolicy.BEST_EFFORT
                relax.append('best effort')
            if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL and any(
                    p.qos_profile.durability == DurabilityPolicy.VOLATILE for p in pubs):
                new.durability = DurabilityPolicy.VOLATILE
                relax.append('volatile')
            if relax:
                self.get_logger().warning(f'{topic}: a publisher offers {" and ".join(relax)} QoS; '
                                          f'resubscribing to match it (messages may be lost)')
                self._subscribe(topic, msgtype, new)

    def _publish_status(self):
        level, message, values = self.rec.status()
        self.diag.publish(level, message, values)
        # The core logs its own write errors; log here what only the periodic check finds.
        if level == 2 and message != self._last_message and message != self.rec.error:
            self.get_logger().error(f'recorder: {message}')
        self._last_message = message if level == 2 else None

    def close(self):
        if self.rec is not None:
            self.rec.close()


def _root(cfg):
    import os
    return os.path.abspath(os.path.expanduser(cfg.episode_dir))


def main(args=None):
    run_node(lambda: RecorderNode(), args)


if __name__ == '__main__':
    main()
