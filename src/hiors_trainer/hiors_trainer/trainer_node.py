"""Trainer node: runs the Hi-ORS training core in a background thread (the robot never waits on
it), re-scans episodes on /hiors/episode/event, and publishes each signed checkpoint manifest on
/hiors/checkpoint (std_msgs/String JSON; reliable, transient-local, depth 1)."""
import dataclasses
import json
import threading
from dataclasses import dataclass

from rclpy.node import Node
from std_msgs.msg import String

from hiors_common.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher
from hiors_trainer.telemetry import STATUS_NAME
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.signing import SigningKeyMissing, load_key
from hiors_common.topics import CHECKPOINT, EPISODE_EVENT, latched_qos

from .core import Trainer, TrainerConfig


@dataclass
class TrainerNodeConfig(TrainerConfig):
    checkpoint_key_file: str = ''        # else env HIORS_CHECKPOINT_KEY[_FILE]
    inline_limit_bytes: int = 8 << 20    # bigger checkpoints travel as a file:// URI
    max_steps: int = 0                   # 0 = train forever


class TrainerNode(Node):
    def __init__(self):
        super().__init__('trainer')
        self.cfg = declare_config(self, TrainerNodeConfig)
        core_fields = {f.name for f in dataclasses.fields(TrainerConfig)}
        self.core_cfg = TrainerConfig(**{k: v for k, v in dataclasses.asdict(self.cfg).items() if k in core_fields})
        try:
            self.key = load_key(self.cfg.checkpoint_key_file)
        except SigningKeyMissing as exc:
            self.key = None
            self.get_logger().error(f'{exc}: checkpoints are saved but not published')
        self.pub = self.create_publisher(String, CHECKPOINT, latched_qos())
        self.create_subscription(String, EPISODE_EVENT, self._on_event, 10)
        self.diag = DiagnosticsPublisher(self, STATUS_NAME)
        self.trainer = Trainer(self.core_cfg)
        resumed = self.trainer.resume_or_init()
        self.get_logger().info(f'{"resumed at step %d" % self.trainer.step if resumed else "fresh start"}; '
                               f'method {self.cfg.method}, watching {self.cfg.episode_dir}')
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.error = ''
        self.last = {}
        self._thread = threading.Thread(target=self._loop, daemon=True, name='trainer')
        self._thread.start()
        self.create_timer(1.0, self._report)

    def _on_event(self, msg: String):
        if msg.data in ('success', 'failure', 'abort'):
            self.wake.set()      # an episode just finished: re-scan soon (the recorder writes it)

    def _publish(self, info: dict):
        if self.key is None:
            return
        from hiors_policy.checkpoint_transport import build_manifest
        manifest = build_manifest(info['path'], info['version'], self.key, self.cfg.inline_limit_bytes)
        self.pub.publish(String(data=json.dumps(manifest)))
        self.get_logger().info(f"published checkpoint {info['version']} ({info['size'] / 1e6:.1f} MB)")

    def _loop(self):
        try:
            self.last = self.trainer.run(max_steps=self.cfg.max_steps, stop=self.stop,
                                         on_checkpoint=self._publish, wake=self.wake)
        except Exception as exc:  # noqa: BLE001 - report, never take the robot down
            self.error = f'training stopped: {exc}'
            self.get_logger().error(self.error)

    def _report(self):
        r = self.trainer.report()
        values = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in r.items()}
        values.update(self.trainer.telemetry())        # the dashboard's keys (telemetry contract)
        level = ERROR if self.error else (OK if r['accepted_samples'] else WARN)
        self.diag.publish(level,
                          self.error or ('training' if r['accepted_samples'] else 'waiting for accepted episodes'),
                          values)

    def close(self):
        self.stop.set()
        self.wake.set()
        self._thread.join(timeout=30)
        tr = self.trainer
        if not self._thread.is_alive() and not self.error and tr.step > tr.saved_step:
            # Clean stop (SIGINT/SIGTERM): keep the steps since the last checkpoint.
            info = tr.save_checkpoint()
            print(f"trainer: saved checkpoint {info['version']} at step {tr.step} on shutdown", flush=True)


def main(args=None):
    # Its stop may finish a train step and save a checkpoint (the supervisor allows 120 s).
    run_node(lambda: TrainerNode(), args, shutdown_trace_after_s=100.0)


if __name__ == '__main__':
    main()
