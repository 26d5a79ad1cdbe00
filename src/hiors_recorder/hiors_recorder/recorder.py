"""The episode recorder core (no ROS): turns a stream of serialized messages and episode events
into one finished rosbag2 + episode.json per episode, and recovers what a crash left behind.

The node feeds `on_message(topic, raw_cdr, t_ns)` from its subscriptions; all disk writes happen
on one writer thread, so the subscription callbacks only copy bytes into a queue.
"""
import collections
import errno
import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from hiors_common.atomic import atomic_write_text
from hiors_common.contracts import DEFAULT_PROMPT
from hiors_common.topics import (ACTION_CHUNK_RAW, CAMERA_TOPIC_FORMAT, EPISODE_EVENT, EXECUTED_ACTION, INTERVENTION,
                                 JOINT_STATES, POLICY_VERSION)

from . import __version__ as RECORDER_VERSION
from . import bagio
from .episode import (BAG_DIR, EPISODE_FILE, MARKER_FILE, QUARANTINE_DIR, EpisodeInfo,
                      atomic_write_json, new_episode_id, reward_for, write_episode_info)

ROLE_TYPES = {
    'joint_states': bagio.JOINT_STATE,
    'executed_action': bagio.JOINT_STATE,
    'intervention': bagio.BOOL,
    'action_chunk': bagio.FLOAT64_MULTI_ARRAY,
    'policy_version': bagio.STRING,
    'event': bagio.STRING,
}
END_EVENTS = ('success', 'failure', 'abort')


_FROM_TOPICS = '(default from hiors_common.topics)'


@dataclass
class RecorderConfig:
    episode_dir: str = field(default='~/.hiors/episodes', metadata={'doc': 'root of the episode directories'})
    robot: str = field(default='hiors_sim_arm', metadata={'doc': 'robot name stored with each episode'})
    task: str = field(default=DEFAULT_PROMPT, metadata={'doc': 'task stored with each episode'})
    joint_states_topic: str = field(default=JOINT_STATES, metadata={
        'doc': f'sensor_msgs/JointState recorded: the measured robot state {_FROM_TOPICS}'})
    cameras: list[str] = field(default_factory=lambda: ['front', 'wrist'],
                               metadata={'doc': 'camera names; topic from camera_topic_format'})
    camera_topic_format: str = field(default=CAMERA_TOPIC_FORMAT, metadata={
        'doc': f'sensor_msgs/Image topic of each camera, {{name}} = the camera name {_FROM_TOPICS}'})
    executed_action_topic: str = field(default=EXECUTED_ACTION, metadata={
        'doc': f"sensor_msgs/JointState recorded: the mux's sent commands, the training labels {_FROM_TOPICS}"})
    intervention_topic: str = field(default=INTERVENTION, metadata={
        'doc': f'std_msgs/Bool recorded: true while a human has control {_FROM_TOPICS}'})
    action_chunk_topic: str = field(default=ACTION_CHUNK_RAW, metadata={
        'doc': f"std_msgs/Float64MultiArray recorded: the policy's unnormalised action chunks {_FROM_TOPICS}"})
    policy_version_topic: str = field(default=POLICY_VERSION, metadata={
        'doc': f"std_msgs/String recorded: the policy's checkpoint version, stored with the episode {_FROM_TOPICS}"})
    event_topic: str = field(default=EPISODE_EVENT, metadata={
        'doc': f'std_msgs/String: start | success | failure | abort; start and end each episode {_FROM_TOPICS}'})
    joint_states_max_hz: float = field(default=0.0, metadata={'doc': 'record at most this rate (0 = every message)'})
    camera_max_hz: float = field(default=0.0, metadata={'doc': 'per camera; 0 = every message'})
    action_chunk_max_hz: float = field(default=0.0, metadata={'doc': '0 = every message'})
    reliable: bool = field(default=True, metadata={'doc': 'reliable subscriptions (false: best effort)'})
    qos_depth: int = field(default=100, metadata={
        'doc': 'queue depth of the joint state, camera and action chunk subscriptions (events, '
               'intervention and executed actions use EVENT_DEPTH, the policy version depth 1)'})
    compression: str = field(default='', metadata={'doc': "'' or 'zstd' (MCAP chunk compression)"})
    max_queue_mb: float = field(default=1024.0, metadata={'doc': 'drop (and count) messages beyond this backlog'})
    min_free_mb: float = field(default=200.0, metadata={'doc': 'refuse to start an episode with less free disk'})
    flush_interval_s: float = field(default=1.0, metadata={'doc': 'a crash loses at most this much'})
    event_grace_s: float = field(default=0.5, metadata={
        'doc': 'messages sent (source time) after start / before the end event but handled out of '
               'order within this time still go into the episode'})
    max_episode_s: float = field(default=0.0, metadata={'doc': 'end as abort after this long (0 = no limit)'})
    recover_on_start: bool = field(default=True, metadata={
        'doc': "at start, finish the unfinished episodes a crashed recorder left in episode_dir (outcome "
               "'abort', recovered: true) or move them to _quarantine/"})
    diagnostics_period_s: float = field(default=1.0, metadata={'doc': 'seconds between /diagnostics reports'})

    def topics(self) -> dict:
        """role -> topic, plus 'cameras': {name: topic}."""
        t = {role: getattr(self, f'{role}_topic') for role in ROLE_TYPES}
        t['cameras'] = {name: self.camera_topic_format.format(name=name) for name in self.cameras}
        return t

    def topic_types(self) -> dict:
        t = self.topics()
        out = {t[role]: msgtype for role, msgtype in ROLE_TYPES.items()}
        for topic in t['cameras'].values():
            out[topic] = bagio.IMAGE
        return out

    def rate_limits(self) -> dict:
        t = self.topics()
        limits = {t['joint_states']: self.joint_states_max_hz, t['action_chunk']: self.action_chunk_max_hz}
        for topic in t['cameras'].values():
            limits[topic] = self.camera_max_hz
        return {k: v for k, v in limits.items() if v and v > 0}


def _errtext(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f'disk full: {exc}'
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f'episode directory not writable: {exc}'
    return f'{type(exc).__name__}: {exc}'


def check_directory(root: str, min_free_mb: float) -> str:
    """'' if episodes can be written under `root`, else the reason."""
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, f'.write-probe-{os.getpid()}')
        with open(probe, 'wb') as f:
            f.write(b'x')
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            return f'disk full: cannot write under {root}: {exc}'
        return f'episode directory {root} is not writable: {exc}'
    try:
        st = os.statvfs(root)
        free_mb = st.f_bavail * st.f_frsize / 2**20
    except OSError as exc:
        return f'cannot stat {root}: {exc}'
    if free_mb < min_free_mb:
        return f'disk full: {free_mb:.0f} MB free under {root}, need at least {min_free_mb:.0f} MB (min_free_mb)'
    return ''


class EpisodeRecorder:
    def __init__(self, config: RecorderConfig, log=None, now_ns=time.time_ns):
        self.cfg = config
        self.log = log or logging.getLogger('hiors_recorder')
        self.now_ns = now_ns
        self.root = os.path.abspath(os.path.expanduser(config.episode_dir))
        self.topics = config.topics()
        self.topic_types = config.topic_types()
        self._min_period = {t: int(1e9 / hz) for t, hz in config.rate_limits().items()}
        self._last_kept = {}
        self._sticky_topics = (self.topics['policy_version'], self.topics['intervention'])
        self._sticky = {}
        self._counter = 0
        self._current = None            # dict for the episode being recorded
        self._closing = None            # an ended episode still taking late messages (grace time)
        self._grace_ns = int(config.event_grace_s * 1e9)
        self._recent = collections.deque()   # messages of the last grace period while idle
        self._queue = queue.Queue()
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self._max_queue = int(config.max_queue_mb * 2**20)
        self.dropped = {}
        self.error = ''                  # last write error (sticky until an episode finishes)
        self.episodes_written = 0
        self.last_episode = ''
        self.messages_written = 0
        self._thread = threading.Thread(target=self._run, name='episode-writer', daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ called by the node
    @property
    def recording(self) -> bool:
        return self._current is not None or self._closing is not None

    def on_message(self, topic: str, raw, t_ns: int | None = None, src_ns: int | None = None):
        """One received message: receive time `t_ns` (bag timestamp) and, when known, the
        publisher's send time `src_ns` (used only to place messages around episode events)."""
        t_ns = self.now_ns() if t_ns is None else t_ns
        if self._closing is not None and t_ns >= self._closing['deadline']:
            self._finish_closing()
        if topic in self._sticky_topics:
            self._sticky[topic] = bytes(raw)
        if topic == self.topics['event']:
            self._on_event(raw, t_ns, src_ns)
            return
        cl = self._closing
        if cl is not None and src_ns and src_ns <= cl['end_src']:
            # sent before the end event but handled after it: still part of the episode
            self._enqueue(cl['ep'], topic, t_ns, raw)
            return
        cur = self._current
        if cur is None:
            if self._grace_ns > 0 and src_ns:
                self._recent.append((topic, t_ns, src_ns, raw))
                while self._recent and t_ns - self._recent[0][1] > self._grace_ns:
                    self._recent.popleft()
            return
        self._record(cur, topic, t_ns, raw)

    def _record(self, cur, topic, t_ns, raw):
        period = self._min_period.get(topic)
        if period:
            last = self._last_kept.get(topic)
            # keep phase: accept a message up to 10% early so a 30 Hz stream limited to 30 Hz is kept whole
            if last is not None and t_ns - last < period * 0.9:
                return
            self._last_kept[topic] = t_ns
        self._enqueue(cur, topic, t_ns, raw)
        if self.cfg.max_episode_s > 0 and t_ns - cur['start_ns'] > self.cfg.max_episode_s * 1e9:
            self.end_episode('abort', t_ns, f'episode longer than max_episode_s={self.cfg.max_episode_s}')

    def tick(self, t_ns: int | None = None):
        """Called periodically: finishes an episode whose end-event grace time is over."""
        t_ns = self.now_ns() if t_ns is None else t_ns
        if self._closing is not None and t_ns >= self._closing['deadline']:
            self._finish_closing()

    def _finish_closing(self):
        cl, self._closing = self._closing, None
        if cl is not None:
            self._queue.put(('close', cl['ep']['id'], cl['outcome'], cl['t_ns'], cl['reason'],
                             dict(cl['ep']['dropped'])))

    def _enqueue(self, cur, topic, t_ns, raw):
        size = len(raw)
        with self._lock:
            if self._queued_bytes + size > self._max_queue:
                self.dropped[topic] = self.dropped.get(topic, 0) + 1
                cur['dropped'][topic] = cur['dropped'].get(topic, 0) + 1
                return
            self._queued_bytes += size
        self._queue.put(('msg', cur['id'], topic, self.topic_types[topic], t_ns, bytes(raw)))

    def _on_event(self, raw, t_ns, src_ns=None):
        try:
            event = bagio.deserialize(raw, bagio.STRING).data.strip().lower()
        except Exception as exc:  # noqa: BLE001
            self.log.warning(f'ignoring undecodable episode event: {exc}')
            return
        if event == 'start':
            self._finish_closing()
            if self._current is not None:
                self.end_episode('abort', t_ns, 'a new start event came before an end event')
            if self.start_episode(t_ns) is not None:
                self._enqueue(self._current, self.topics['event'], t_ns, raw)
                if src_ns:
                    # sent after the start event but handled before it: part of the episode
                    for topic, t_m, src_m, raw_m in self._recent:
                        if src_m >= src_ns:
                            self._record(self._current, topic, t_m, raw_m)
            self._recent.clear()
        elif event in END_EVENTS:
            if self._current is None:
                self.log.warning(f"episode event '{event}' while no episode is being recorded: ignored")
                return
            self._enqueue(self._current, self.topics['event'], t_ns, raw)
            if src_ns and self._grace_ns > 0:
                self._closing = {'ep': self._current, 'end_src': src_ns, 'deadline': t_ns + self._grace_ns,
                                 'outcome': event, 't_ns': t_ns, 'reason': f'{event} event'}
                self._current = None
            else:
                self.end_episode(event, t_ns, f'{event} event')
        else:
            self.log.warning(f'unknown episode event {event!r} (expected start/success/failure/abort)')

    def start_episode(self, t_ns: int | None = None):
        t_ns = self.now_ns() if t_ns is None else t_ns
        problem = check_directory(self.root, self.cfg.min_free_mb)
        if problem:
            self.error = f'not recording: {problem}'
            self.log.error(self.error)
            return None
        self._counter += 1
        ep_id = new_episode_id(t_ns / 1e9, self._counter)
        self._current = {'id': ep_id, 'start_ns': t_ns, 'dropped': {}}
        self._last_kept.clear()
        self._queue.put(('open', ep_id, t_ns))
        # Latched / slow topics: the version and the intervention state in force at the start.
        for topic in self._sticky_topics:
            if topic in self._sticky:
                self._enqueue(self._current, topic, t_ns, self._sticky[topic])
        self.log.info(f'episode {ep_id} started')
        return ep_id

    def end_episode(self, outcome: str, t_ns: int | None = None, reason: str = ''):
        cur, self._current = self._current, None
        if cur is None:
            return
        t_ns = self.now_ns() if t_ns is None else t_ns
        self._queue.put(('close', cur['id'], outcome, t_ns, reason, dict(cur['dropped'])))

    def status(self):
        """(level, message, values) for /diagnostics: level 0 OK, 1 WARN, 2 ERROR."""
        values = {'episode_dir': self.root, 'recording': self.recording,
                  'episode': self._current['id'] if self._current else '',
                  'episodes_written': self.episodes_written, 'last_episode': self.last_episode,
                  'queue_mb': round(self._queued_bytes / 2**20, 1),
                  'messages_written': self.messages_written,
                  'dropped': sum(self.dropped.values())}
        if self.error:
            return 2, self.error, values
        problem = check_directory(self.root, self.cfg.min_free_mb)
        if problem:
            return 2, problem, values
        if self.dropped:
            return 1, f'dropped messages (writer backlog over max_queue_mb): {self.dropped}', values
        return 0, 'recording' if self.recording else 'idle', values

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the writer has handled everything queued so far."""
        done = threading.Event()
        self._queue.put(('sync', done))
        return done.wait(timeout)

    def close(self, timeout: float = 60.0):
        self._finish_closing()
        if self._current is not None:
            self.end_episode('abort', None, 'recorder shut down during the episode')
        self._queue.put(('stop',))
        self._thread.join(timeout)

    # ------------------------------------------------------------------ writer thread
    def _run(self):
        ep = None   # {'id', 'dir', 'writer', 'stats', 'start_ns', 'failed', 'last_flush'}
        while True:
            item = self._queue.get()
            kind = item[0]
            try:
                if kind == 'stop':
                    if ep is not None and ep.get('writer') is not None:
                        ep['writer'].abort()
                    return
                if kind == 'sync':
                    item[1].set()
                elif kind == 'open':
                    if ep is not None and ep.get('writer') is not None:
                        ep['writer'].abort()
                    ep = self._open(item[1], item[2])
                elif kind == 'msg':
                    _, ep_id, topic, msgtype, t_ns, raw = item
                    with self._lock:
                        self._queued_bytes -= len(raw)
                    if ep is None or ep['id'] != ep_id or ep['failed']:
                        continue
                    ep['writer'].write(topic, msgtype, t_ns, raw)
                    ep['stats'].add(topic, t_ns, raw)
                    self.messages_written += 1
                    now = time.monotonic()
                    if now - ep['last_flush'] > self.cfg.flush_interval_s:
                        ep['writer'].flush()
                        ep['last_flush'] = now
                elif kind == 'close':
                    _, ep_id, outcome, t_ns, reason, dropped = item
                    if ep is not None and ep['id'] == ep_id and not ep['failed']:
                        self._finish(ep, outcome, t_ns, reason, dropped)
                    ep = None
            except Exception as exc:  # noqa: BLE001 - disk full, unwritable dir, ... : report, keep running
                if ep is not None and not ep['failed']:
                    ep['failed'] = True
                    if ep.get('writer') is not None:
                        ep['writer'].abort()
                    self.error = (f'episode {ep["id"]} not saved: {_errtext(exc)} '
                                  f'(left unfinished in {ep["dir"]}; it is never trained on)')
                else:
                    self.error = f'recorder write error: {_errtext(exc)}'
                self.log.error(self.error)

    def _open(self, ep_id, start_ns):
        ep_dir = os.path.join(self.root, ep_id)
        ep = {'id': ep_id, 'dir': ep_dir, 'writer': None, 'start_ns': start_ns, 'failed': False,
              'last_flush': time.monotonic()}
        try:
            os.makedirs(ep_dir)
            atomic_write_json(os.path.join(ep_dir, MARKER_FILE), {
                'episode_id': ep_id, 'start_time': start_ns / 1e9, 'pid': os.getpid(),
                'robot': self.cfg.robot, 'task': self.cfg.task, 'topics': self.topics,
                'recorder_version': RECORDER_VERSION})
            ep['writer'] = bagio.EpisodeBagWriter(os.path.join(ep_dir, BAG_DIR), self.cfg.compression)
        except Exception as exc:  # noqa: BLE001
            ep['failed'] = True
            self.error = f'episode {ep_id} not recorded: {_errtext(exc)}'
            self.log.error(self.error)
            return ep
        ep['stats'] = bagio.EpisodeStats(self.topics, start_ns)
        return ep

    def _finish(self, ep, outcome, end_ns, reason, dropped):
        ep['writer'].close()
        stats = ep['stats']
        info = build_info(ep['id'], self.cfg.robot, self.cfg.task, self.topics, stats, ep['start_ns'],
                          end_ns, outcome, reason, ep['writer'].counts, dropped, ep['dir'])
        write_episode_info(info)
        os.unlink(os.path.join(ep['dir'], MARKER_FILE))
        self.episodes_written += 1
        self.last_episode = ep['id']
        self.error = ''
        self.log.info(f'episode {ep["id"]} finished: {outcome}, {info.steps} steps, '
                      f'{info.num_interventions} interventions, {info.duration_s:.1f} s, '
                      f'{sum(info.topic_counts.values())} messages')


def build_info(ep_id, robot, task, topics, stats, start_ns, end_ns, outcome, reason, counts,
               dropped, ep_dir, recovered=False) -> EpisodeInfo:
    spans = stats.intervention_spans(end_ns)
    return EpisodeInfo(
        episode_id=ep_id, outcome=outcome, reward=reward_for(outcome), start_time=start_ns / 1e9,
        end_time=end_ns / 1e9, steps=stats.steps, num_interventions=len(spans),
        intervention_spans=spans, intervention_time_s=round(sum(b - a for a, b in spans), 6),
        robot=robot, task=task,
        policy_version=stats.policy_versions[0] if stats.policy_versions else '',
        policy_versions=list(stats.policy_versions), recorder_version=RECORDER_VERSION,
        topics=topics, topic_counts=dict(counts), dropped_messages=dict(dropped),
        recovered=recovered, end_reason=reason, path=ep_dir)


# ---------------------------------------------------------------------------------------------
# Recovery of episodes a crashed recorder left unfinished

def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def quarantine(root: str, ep_dir: str, reason: str, log) -> str:
    qdir = os.path.join(root, QUARANTINE_DIR)
    os.makedirs(qdir, exist_ok=True)
    dst = os.path.join(qdir, os.path.basename(ep_dir))
    if os.path.exists(dst):
        dst += f'.{int(time.time())}'
    shutil.move(ep_dir, dst)
    atomic_write_text(os.path.join(dst, 'QUARANTINED.txt'), reason + '\n')
    log.error(f'quarantined unfinished episode {os.path.basename(ep_dir)} -> {dst}: {reason}')
    return dst


def recover_unfinished(root: str, log=None, default_topics: dict | None = None) -> list:
    """Finish or quarantine every episode directory without episode.json (a crashed recorder).

    A salvageable bag is rewritten complete and labelled outcome 'abort' with `recovered: true`
    (so rejection sampling never trains on it unless a person relabels it); a directory with
    nothing salvageable moves to `<root>/_quarantine/`. Returns [(episode_id, 'recovered' |
    'quarantined' | 'skipped', detail)]. Directories another live recorder is writing are skipped.
    """
    log = log or logging.getLogger('hiors_recorder')
    root = os.path.abspath(os.path.expanduser(root))
    results = []
    if not os.path.isdir(root):
        return results
    for name in sorted(os.listdir(root)):
        ep_dir = os.path.join(root, name)
        if name.startswith(('_', '.')) or not os.path.isdir(ep_dir):
            continue
        marker_path = os.path.join(ep_dir, MARKER_FILE)
        if os.path.exists(os.path.join(ep_dir, EPISODE_FILE)):
            if os.path.exists(marker_path):  # crashed between episode.json and marker removal
                os.unlink(marker_path)
            continue
        marker = {}
        try:
            with open(marker_path) as f:
                marker = json.load(f)
        except (OSError, ValueError):
            pass
        if marker.get('pid') not in (None, os.getpid()) and _pid_alive(marker.get('pid')):
            results.append((name, 'skipped', f'being recorded by live pid {marker["pid"]}'))
            continue
        try:
            results.append((name, 'recovered', _recover_one(root, ep_dir, name, marker, log, default_topics)))
        except Exception as exc:  # noqa: BLE001 - anything unreadable is quarantined, never used
            try:
                dst = quarantine(root, ep_dir, f'unfinished episode could not be recovered: {exc}', log)
                results.append((name, 'quarantined', dst))
            except OSError as exc2:
                log.error(f'cannot quarantine {ep_dir}: {exc2}')
                results.append((name, 'skipped', str(exc2)))
    return results


def _recover_one(root, ep_dir, name, marker, log, default_topics):
    bag = os.path.join(ep_dir, BAG_DIR)
    tmp_parent = os.path.join(ep_dir, '.recovering')
    tmp = os.path.join(tmp_parent, BAG_DIR)     # same directory name, so the .mcap is bag.mcap
    if not os.path.isdir(bag) and os.path.isfile(os.path.join(tmp, 'metadata.yaml')):
        os.rename(tmp, bag)                     # a recovery was cut off after removing the original
    mcaps = sorted(n for n in os.listdir(bag) if n.endswith('.mcap')) if os.path.isdir(bag) else []
    if not mcaps:
        raise ValueError(f'{bag}: no MCAP file')
    src = os.path.join(bag, mcaps[0])
    schemas, channels, messages = bagio.scan_partial_mcap(src)
    if not messages:
        raise ValueError(f'{src}: no complete message chunk')
    if os.path.exists(tmp_parent):
        shutil.rmtree(tmp_parent)
    os.makedirs(tmp_parent)
    counts = bagio.rewrite_messages(tmp, schemas, channels, messages)
    shutil.rmtree(bag)
    os.rename(tmp, bag)
    os.rmdir(tmp_parent)
    topics = marker.get('topics') or default_topics or {}
    start_ns = int(marker['start_time'] * 1e9) if 'start_time' in marker else messages[0][1]
    stats = bagio.EpisodeStats(topics, start_ns)
    for cid, t_ns, data in messages:
        stats.add(channels[cid][0], t_ns, data)
    end_ns = max(stats.last_ns, start_ns)
    reason = (f'recorder stopped mid-episode (crash); recovered {len(messages)} messages from '
              f'{mcaps[0]}; labelled abort so it is not trained on')
    info = build_info(name, marker.get('robot', ''), marker.get('task', ''), topics, stats, start_ns,
                      end_ns, 'abort', reason, counts, {}, ep_dir, recovered=True)
    write_episode_info(info)
    try:
        os.unlink(os.path.join(ep_dir, MARKER_FILE))
    except FileNotFoundError:
        pass
    log.warning(f'recovered unfinished episode {name}: {len(messages)} messages, '
                f'{info.duration_s:.1f} s, labelled abort (relabel with `hiors_episodes relabel {name} ...` '
                f'if it was good)')
    return f'{len(messages)} messages'
