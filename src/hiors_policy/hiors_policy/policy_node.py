"""Policy node: observations in, joint commands out at the control rate; inference in a worker
thread; signed checkpoints from /hiors/checkpoint swapped in between ticks."""
import copy
import json
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, MultiArrayDimension, String
from visualization_msgs.msg import MarkerArray

from hiors_common.contracts import DEFAULT_PROMPT
from hiors_common.diagnostics import DiagnosticsPublisher, ERROR, OK, WARN
from hiors_common.node_main import run_node
from hiors_common.params import declare_config
from hiors_common.robot import JOINT_NAMES
from hiors_common.signing import SigningKeyMissing, load_key
from hiors_common.topics import (ACTION_CHUNK_MARKERS, ACTION_CHUNK_RAW, CHECKPOINT, INTERVENTION, JOINT_STATES,
                                 POLICY_COMMAND, POLICY_VERSION, camera_topic, latched_qos, reliable_qos)

from .checkpoint import load_checkpoint, load_state_into, training_prompt
from .checkpoint_transport import TransportError, verify_and_fetch
from .chunk_executor import DEFAULT_BLEND_TICKS, DEFAULT_LEAD_TICKS, ChunkExecutor
from .config import make_config
from .markers import ChunkMarkers
from .object_pose import OBJECT_POSE_NAMES, ObjectPoseEstimator, observed_state
from .observation import ObservationSync
from .modeling import Pi0Policy
from .processing import NormStats, PolicyProcessor

JOINTS = list(JOINT_NAMES)
FRAME_LATENCY_WINDOW = 20000          # commands the frame -> command percentiles are taken over
# The line the node logs at shutdown with its frame -> command latency (bench_graph_parity reads it).
LATENCY_LOG_PREFIX = 'camera frame -> command latency:'


@dataclass
class PolicyNodeConfig:
    control_rate_hz: float = 10.0       # control ticks per second: one command to the mux per tick
    # What starts a control tick: 'timer' = the node's own timer at control_rate_hz (a robot whose
    # joint states come faster than the control rate); 'joint_states' = every joint-state message
    # (a driver that publishes one per control tick, like the sim): the commands stay in step with
    # the robot's ticks. Two free-running 10 Hz timers (sim and policy) left 3-18% of the sim's
    # ticks per episode without a new command and the next with two (one chunk action skipped).
    tick_source: str = 'timer'
    preset: str = 'tiny'                # model preset, used only without a checkpoint (random init)
    checkpoint: str = ''                # .safetensors written by the trainer ('' = random init)
    # object-pose estimator file (hiors_policy.object_pose, trained by bench/train_pose_estimator.py):
    # its reading of the peg and hole from each observation's frames and joints is appended to the
    # joint state, for a checkpoint trained so (state_dim = joints + 6); '' = joints only
    object_pose_estimator: str = ''
    # task instruction the policy conditions on (default: hiors_common.contracts.DEFAULT_PROMPT);
    # a checkpoint trained on another prompt is used anyway, with a warning
    prompt: str = DEFAULT_PROMPT
    # k of the H predicted actions executed per chunk (re-plan after k); 0 = the checkpoint's /
    # policy config's own
    n_action_steps: int = 0
    lead_ticks: int = DEFAULT_LEAD_TICKS    # ask for the next chunk this many ticks early
    blend_ticks: int = DEFAULT_BLEND_TICKS  # cross-fade between chunks over this many ticks
    # cameras read, each from camera_topic(name) = /camera/<name>/image_raw (hiors_common.topics);
    # each must be one of the model's camera_names, and all fresh, or the policy holds
    cameras: list[str] = field(default_factory=lambda: ['front', 'wrist'])
    # the robot description's (hiors_common.robot); set them for another arm
    joint_names: list[str] = field(default_factory=lambda: list(JOINTS))
    observation_timeout_s: float = 1.0  # joint states / images older than this -> hold position
    checkpoint_key_file: str = ''       # '' = env HIORS_CHECKPOINT_KEY_FILE / HIORS_CHECKPOINT_KEY
    max_checkpoint_bytes: int = 4 << 30  # a published checkpoint larger than this (bytes) is rejected
    # A signed manifest's file:// URI is opened only inside these directories (real paths);
    # empty = the start checkpoint's directory and ~/.hiors/checkpoints.
    checkpoint_dirs: list[str] = field(default_factory=lambda: [''])
    torch_threads: int = 1              # the sim and the recorder share the CPU
    seed: int = 0                       # torch seed: random-init weights and the flow-matching sampling noise
    frame_id: str = 'world'             # header.frame_id of the action-chunk markers (RViz)


class PolicyNode(Node):
    def __init__(self):
        super().__init__('policy')
        self.cfg = declare_config(self, PolicyNodeConfig)
        if self.cfg.tick_source not in ('timer', 'joint_states'):
            raise ValueError(f"tick_source must be 'timer' or 'joint_states', not {self.cfg.tick_source!r}")
        torch.set_num_threads(max(1, self.cfg.torch_threads))
        torch.manual_seed(self.cfg.seed)
        self.checkpoint_dirs = [d for d in self.cfg.checkpoint_dirs if d] or (
            ['~/.hiors/checkpoints'] + ([os.path.dirname(os.path.abspath(self.cfg.checkpoint))]
                                        if self.cfg.checkpoint else []))
        if self.cfg.checkpoint:
            policy, config, stats, version = load_checkpoint(self.cfg.checkpoint)
            self.get_logger().info(f'loaded checkpoint {self.cfg.checkpoint} (version {version})')
            self._check_prompt(self.cfg.checkpoint, version)
        else:
            config = make_config(self.cfg.preset)
            policy, stats, version = Pi0Policy(config), NormStats.identity(7, 7), 'random-init'
            self.get_logger().warning(f"no checkpoint: UNTRAINED random-init '{self.cfg.preset}' policy; its "
                                      'commands are noise (the mux drops those out of range and holds). '
                                      'Pass checkpoint:=<file> or let the trainer publish one')
        self.estimator = self._load_estimator(config)
        policy.eval()
        self._model_lock = threading.Lock()
        self._spare = None                   # second model the next checkpoint is loaded into
        self._busy_locks = {}
        self.policy, self.processor, self.version = policy, PolicyProcessor(config, stats), version
        self.executor_ = ChunkExecutor(self.cfg.n_action_steps or config.n_action_steps, self.cfg.lead_ticks,
                                       self.cfg.blend_ticks)
        self.markers = ChunkMarkers(self.cfg.frame_id)
        self.tick = 0
        self.q = None
        self.q_stamp = 0.0
        self.images, self.image_stamps = {}, {}
        # Camera frame -> command latency: the capture stamp (header) of the oldest image each
        # chunk was predicted from, by the tick of its observation; one sample per command sent.
        self._capture_by_tick = {}
        self.sync = ObservationSync(self.cfg.cameras)
        self.frame_to_command_ms = deque(maxlen=FRAME_LATENCY_WINDOW)
        self.intervention = False
        self.stats = {'chunks': 0, 'holds': 0, 'rejected_chunks': 0, 'rejected_checkpoints': 0,
                      'swaps': 0, 'stale_chunks': 0, 'latency_ms': 0.0, 'last_error': '',
                      'obs_state_image_skew_ms': 0.0}
        try:
            self.key = load_key(self.cfg.checkpoint_key_file)
        except SigningKeyMissing as exc:
            self.key = None
            self.get_logger().warning(f'{exc}: every checkpoint on {CHECKPOINT} will be rejected')

        self.create_subscription(JointState, JOINT_STATES, self._on_joints, reliable_qos(5))
        for cam in self.cfg.cameras:
            self.create_subscription(Image, camera_topic(cam),
                                     lambda m, c=cam: self._on_image(c, m), reliable_qos(2))
        # Volatile + reliable matches both latched and plain publishers (a transient-local
        # subscription would silently miss a volatile publisher: the policy would never go quiet).
        self.create_subscription(Bool, INTERVENTION, self._on_intervention, reliable_qos(5))
        self.create_subscription(String, CHECKPOINT, self._on_checkpoint, latched_qos())
        self.pub_cmd = self.create_publisher(Float64MultiArray, POLICY_COMMAND, 10)
        self.pub_markers = self.create_publisher(MarkerArray, ACTION_CHUNK_MARKERS, 2)
        self.pub_raw = self.create_publisher(Float64MultiArray, ACTION_CHUNK_RAW, 10)
        self.pub_version = self.create_publisher(String, POLICY_VERSION, latched_qos())
        self.diag = DiagnosticsPublisher(self, 'policy')
        self.pub_version.publish(String(data=self.version))

        self._requests = queue.Queue(maxsize=1)
        self._checkpoints = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._inference_loop, daemon=True, name='inference')
        self._loader = threading.Thread(target=self._checkpoint_loop, daemon=True, name='checkpoint-loader')
        self._worker.start()
        self._loader.start()
        self._new_chunk = None
        self._pending_request = None         # tick whose inference request waits for its frames
        self._swapped = False
        self._chunk_lock = threading.Lock()
        if self.cfg.tick_source == 'timer':
            self.create_timer(1.0 / self.cfg.control_rate_hz, self._on_tick)
        self.create_timer(1.0, self._report)

    def _load_estimator(self, config):
        """The object-pose estimator, if set; the policy's state_dim must match what it makes."""
        joints = len(self.cfg.joint_names)
        estimator = None
        if self.cfg.object_pose_estimator:
            estimator = ObjectPoseEstimator.load(os.path.expanduser(self.cfg.object_pose_estimator))
        want = joints + (len(OBJECT_POSE_NAMES) if estimator else 0)
        if config.state_dim != want:
            raise ValueError(f'the policy state_dim is {config.state_dim}, but the node gives it {joints} joints'
                             + (f' + {len(OBJECT_POSE_NAMES)} estimated object poses' if estimator else '')
                             + (' (set object_pose_estimator for a policy trained with one)'
                                if config.state_dim == joints + len(OBJECT_POSE_NAMES) else ''))
        return estimator

    # --- inputs ------------------------------------------------------------------------------
    def _on_joints(self, msg: JointState):
        index = {n: i for i, n in enumerate(msg.name)}
        if all(n in index for n in self.cfg.joint_names):
            self.q = np.array([msg.position[index[n]] for n in self.cfg.joint_names])
            self.q_stamp = time.monotonic()
            self.sync.add_state(Time.from_msg(msg.header.stamp).nanoseconds, self.q)
            if self.cfg.tick_source == 'joint_states':
                self._on_tick()

    def _on_image(self, cam: str, msg: Image):
        if msg.encoding != 'rgb8':
            self.get_logger().error(f'camera {cam}: encoding {msg.encoding!r}, need rgb8',
                                    throttle_duration_sec=10.0)
            return
        self.images[cam] = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        self.image_stamps[cam] = time.monotonic()
        self.sync.add_image(cam, Time.from_msg(msg.header.stamp).nanoseconds, self.images[cam])
        self._request_inference()            # a request waiting for this tick's frames

    def _on_intervention(self, msg: Bool):
        if msg.data != self.intervention:
            self.get_logger().info('human took over: policy silent' if msg.data
                                   else 'human let go: re-planning from the current state')
            self.executor_.reset(self.tick + 1)   # stale chunks (even ones in flight) are dropped
            with self._chunk_lock:
                self._new_chunk = None
            self._pending_request = None
        self.intervention = msg.data

    def _on_checkpoint(self, msg: String):
        try:
            self._checkpoints.put_nowait(msg.data)
        except queue.Full:
            self.get_logger().warning('checkpoint queue full: dropping an offered checkpoint')

    # --- control loop --------------------------------------------------------------------------
    def _fresh(self) -> bool:
        now = time.monotonic()
        if self.q is None or now - self.q_stamp > self.cfg.observation_timeout_s:
            return False
        return all(cam in self.images and now - self.image_stamps[cam] <= self.cfg.observation_timeout_s
                   for cam in self.cfg.cameras)

    def _on_tick(self):
        self.tick += 1
        with self._chunk_lock:
            new, self._new_chunk = self._new_chunk, None
        if new is not None:
            chunk, obs_tick = new
            if not self.executor_.submit(chunk, obs_tick):
                self.stats['rejected_chunks'] += 1
                self.get_logger().error('non-finite action chunk (or failed inference) rejected: holding '
                                        'position', throttle_duration_sec=2.0)
            self.stats['stale_chunks'] = self.executor_.stale
        if self._swapped:
            self._swapped = False
            self.executor_.replan()
        if self.intervention:
            return                              # the human has the robot: publish nothing
        if not self._fresh():
            self.get_logger().warning('observations stale or missing: holding', throttle_duration_sec=5.0)
            self.executor_.reset(self.tick + 1)
            self._pending_request = None
            self._hold()
            return
        if self.executor_.needs_request(self.tick):
            # A request still pending from the last tick has waited long enough for its frames
            # (e.g. cameras slower than the joint states): it goes with the newest ones.
            waited = self._pending_request is not None
            self._pending_request = self.tick
            self._request_inference(force=waited)
        cmd = self.executor_.command(self.tick)
        if cmd is None:
            self._hold()
            return
        self.pub_cmd.publish(Float64MultiArray(data=[float(v) for v in cmd]))
        self._note_frame_latency()

    def _request_inference(self, force: bool = False):
        """Hand the pending tick's observation to the inference worker. Ticking on joint states,
        the request waits (until the frames come in, `_on_image` calls again) for the camera frames
        stamped like the tick's joint state: they reach the node a few ms after it."""
        tick = self._pending_request
        if tick is None:
            return
        if (not force and self.cfg.tick_source == 'joint_states'
                and not self.sync.has_frames_at(self.sync.states[-1][0])):
            return
        self._pending_request = None
        images, state, captured, skew_ns = self.sync.observation()   # fresh: every input seen
        try:
            self._requests.put_nowait(({'images': images, 'state': state}, tick))
            self.executor_.mark_requested()
            self._capture_by_tick[tick] = captured
            self.stats['obs_state_image_skew_ms'] = round(skew_ns / 1e6, 1)
        except queue.Full:
            pass

    def _note_frame_latency(self):
        t0 = self.executor_.chunk_t0
        captured = self._capture_by_tick.get(t0, 0)
        if captured > 0:
            self.frame_to_command_ms.append((self.get_clock().now().nanoseconds - captured) / 1e6)
        for tick in [t for t in self._capture_by_tick if t < t0]:
            del self._capture_by_tick[tick]

    def frame_latency_summary(self) -> dict:
        """p50 / p99 / max of camera frame -> command (ms) over the last commands sent."""
        if not self.frame_to_command_ms:
            return {}
        a = np.asarray(self.frame_to_command_ms)
        return {'frame_to_command_n': int(a.size), 'frame_to_command_p50_ms': round(float(np.percentile(a, 50)), 1),
                'frame_to_command_p99_ms': round(float(np.percentile(a, 99)), 1),
                'frame_to_command_max_ms': round(float(a.max()), 1)}

    def _hold(self):
        if self.q is not None:
            self.stats['holds'] += 1
            self.pub_cmd.publish(Float64MultiArray(data=[float(v) for v in self.q]))

    # --- inference worker ---------------------------------------------------------------------------
    def _inference_loop(self):
        while not self._stop.is_set():
            try:
                obs, obs_tick = self._requests.get(timeout=0.2)
            except queue.Empty:
                continue
            t0 = time.perf_counter()
            try:
                with self._model_lock:
                    policy, processor = self.policy, self.processor
                # The model is marked busy: a swap must not load the next weights into it while
                # this inference still runs (it becomes the spare after a swap).
                with self._busy(policy), torch.inference_mode():
                    state = observed_state(obs['state'], obs['images'], self.estimator)
                    batch = processor.prepare_observation(obs['images'], state, self.cfg.prompt)
                    chunk = processor.joint_targets(policy.sample_actions(batch)[0], state)
            except Exception as exc:  # noqa: BLE001 - model errors: the control thread holds, reports
                self.stats['last_error'] = f'inference failed: {exc}'
                self.get_logger().error(f'inference failed, holding: {exc}', throttle_duration_sec=5.0)
                chunk = None
            if chunk is None or not np.all(np.isfinite(chunk)):
                with self._chunk_lock:           # rejected by the executor on the control thread
                    self._new_chunk = (chunk, obs_tick)
                continue
            self.stats['latency_ms'] = (time.perf_counter() - t0) * 1000
            self.stats['chunks'] += 1
            with self._chunk_lock:
                self._new_chunk = (chunk, obs_tick)
            if self._stop.is_set():              # shutting down: the publishers may be gone
                return
            self._publish_chunk(chunk)

    def _publish_chunk(self, chunk):
        raw = Float64MultiArray(data=[float(v) for v in chunk.reshape(-1)])
        raw.layout.dim = [MultiArrayDimension(label='horizon', size=chunk.shape[0], stride=chunk.size),
                          MultiArrayDimension(label='action', size=chunk.shape[1], stride=chunk.shape[1])]
        self.pub_raw.publish(raw)
        markers = self.markers.build(chunk, self.get_clock().now().to_msg(), self.executor_.k)
        if markers is not None:
            self.pub_markers.publish(markers)

    # --- checkpoint swap ---------------------------------------------------------------------------
    def _busy(self, model) -> threading.Lock:
        with self._model_lock:
            return self._busy_locks.setdefault(id(model), threading.Lock())

    def _checkpoint_loop(self):
        while not self._stop.is_set():
            try:
                text = self._checkpoints.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                if self.key is None:
                    raise TransportError('no checkpoint key configured (checkpoint_key_file / '
                                         'HIORS_CHECKPOINT_KEY_FILE)')
                manifest, data = verify_and_fetch(text, self.key, self.cfg.max_checkpoint_bytes,
                                                  allowed_dirs=self.checkpoint_dirs)
                if manifest['version'] == self.version:
                    continue
                with self._model_lock:
                    current = self.policy
                if self._spare is None:
                    self._spare = copy.deepcopy(current)    # once; later swaps reuse the retired model
                spare = self._spare
                with self._busy(spare):                     # waits for an inference still on it
                    config, stats, version = load_state_into(spare, data)
                spare.eval()
                if self._stop.is_set():          # shutting down: do not swap or publish
                    return
                processor = PolicyProcessor(config, stats)
                with self._model_lock:                       # swap between ticks
                    self.policy, self.processor, self.version = spare, processor, version
                    self._spare = current
                self.stats['swaps'] += 1
                self._swapped = True             # the control thread re-plans with the new weights
                self.pub_version.publish(String(data=version))
                self.get_logger().info(f'swapped in checkpoint {version} ({manifest["size"] / 1e6:.1f} MB)')
                self._check_prompt(data, version)
            except Exception as exc:  # noqa: BLE001 - any bad checkpoint: keep the running policy
                if self._stop.is_set():
                    return
                self.stats['rejected_checkpoints'] += 1
                self.stats['last_error'] = f'checkpoint rejected: {exc}'
                self.get_logger().error(f'checkpoint rejected, keeping {self.version}: {exc}')
                self.diag.publish(ERROR, f'checkpoint rejected: {exc}', {'version': self.version})

    def _check_prompt(self, src, version):
        trained_on = training_prompt(src)
        if trained_on and trained_on != self.cfg.prompt:
            self.get_logger().warning(f'checkpoint {version} was trained on the prompt {trained_on!r}, this node '
                                      f'runs with {self.cfg.prompt!r} (set prompt:= to match)')

    def _report(self):
        level = WARN if self.stats['rejected_chunks'] or not self._fresh() else OK
        message = 'human in control' if self.intervention else ('running' if self._fresh() else 'no observations')
        self.diag.publish(level, message, dict(self.stats, version=self.version, tick=self.tick,
                                              intervention=self.intervention, **self.frame_latency_summary()))

    def close(self):
        # Wait for both threads before the node's handles are destroyed: a thread still inside
        # torch or a publisher when the interpreter finalizes can hang the exit (a supervisor
        # then has to SIGKILL the node). Each loop checks _stop at least every 0.2 s; an
        # inference or a checkpoint load in flight finishes first (seconds at most).
        self._stop.set()
        latency = self.frame_latency_summary()
        if latency:
            self.get_logger().info(f'{LATENCY_LOG_PREFIX} {json.dumps(latency)}')
        for thread in (self._worker, self._loader):
            thread.join(timeout=8.0)
            if thread.is_alive():
                self.get_logger().warning(f'{thread.name} thread still busy at shutdown')


def main(args=None):
    run_node(PolicyNode, args)


if __name__ == '__main__':
    main()
