"""The episode dataset library (ROS-agnostic; the trainer's only reader of recorded episodes).

    from hiors_recorder.dataset import list_episodes, load_episode
    infos = list_episodes(root)              # finished episodes, oldest first; bad ones skipped
    ep = load_episode(infos[0], rate_hz=10.0)

Time alignment convention
-------------------------
All times are the bag's receive timestamps (when the recorder got the message), so topics without
a header (intervention flag, action chunk) share one clock with the others. `ep.t` is in seconds
since the episode's start event.

* Steps: with `rate_hz=None` the steps are the executed-action messages (one per command the mux
  sent); without executed actions, the joint-state messages. With `rate_hz` the steps are those
  messages thinned to one per 1/rate_hz: from the first, each next step is the message nearest
  to the previous step + 1/rate_hz. Steps stay on real message times: a fixed grid t0 + k/rate_hz
  drifts against the robot's clock and then pairs a state with the previous step's action (~40%
  of the steps of the simulated graph's episodes at 10 Hz).
* At every step the observation (state, each image) and the executed action are the latest
  message received at or before the step time ("sample and hold", never a future message).
* Steps before every required stream (joint states, actions if any, each camera) has delivered
  its first message are dropped; `ep.leading_steps_dropped` says how many.
* `ep.intervention` is true where the executed action came from the human (`source == 'human'`);
  episodes without executed actions use the /hiors/intervention flag (false before its first
  message). `ep.intervention_flag` is always the flag.
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from hiors_common.robot import JOINT_NAMES
from hiors_common.topics import (ACTION_CHUNK_RAW, EPISODE_EVENT, EXECUTED_ACTION, INTERVENTION, JOINT_STATES,
                                 POLICY_VERSION)

from . import bagio
from .episode import (BAG_DIR, EPISODE_FILE, EpisodeError, EpisodeInfo, read_episode_info)

log = logging.getLogger('hiors_recorder')
DEFAULT_TOPICS = {
    'joint_states': JOINT_STATES,
    'executed_action': EXECUTED_ACTION,
    'intervention': INTERVENTION,
    'action_chunk': ACTION_CHUNK_RAW,
    'policy_version': POLICY_VERSION,
    'event': EPISODE_EVENT,
}


@dataclass
class Episode:
    info: EpisodeInfo
    t: np.ndarray                   # (T,) float64 seconds since the episode start
    state: np.ndarray               # (T, D) float32 joint positions
    action: np.ndarray              # (T, D) float32 executed command
    intervention: np.ndarray        # (T,) bool human in control
    images: dict                    # camera -> (T, H, W, 3) uint8
    action_source: np.ndarray       # (T,) str: 'policy' | 'human' | 'hold' | '' (no action)
    intervention_flag: np.ndarray   # (T,) bool, latest /hiors/intervention at or before each step
    joint_names: tuple = JOINT_NAMES
    leading_steps_dropped: int = 0
    stats: dict = field(default_factory=dict)   # per-topic counts and gaps (see topic_stats)

    def __len__(self):
        return len(self.t)


def _bag_problem(episode_dir: str) -> str:
    """'' if the episode's bag looks complete, else what is wrong (naming the file)."""
    bag = os.path.join(episode_dir, BAG_DIR)
    meta = os.path.join(bag, 'metadata.yaml')
    if not os.path.isfile(meta):
        return f'{meta}: missing (bag unfinished or not a rosbag2 bag)'
    mcaps = [n for n in os.listdir(bag) if n.endswith('.mcap')]
    if not mcaps:
        return f'{bag}: no .mcap file'
    for name in mcaps:
        path = os.path.join(bag, name)
        if not bagio.mcap_is_complete(path):
            return f'{path}: truncated or corrupt MCAP file (no valid footer)'
    return ''


def list_episodes(root: str, outcome: str | None = None, warn: bool = True) -> list[EpisodeInfo]:
    """Finished episodes under `root`, oldest first. Unfinished directories (no episode.json) are
    ignored silently (the recorder may be writing them); bad ones are skipped with a warning."""
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        return []
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(('_', '.')) or not os.path.isdir(path):
            continue
        if not os.path.exists(os.path.join(path, EPISODE_FILE)):
            continue
        try:
            info = read_episode_info(path)
            problem = _bag_problem(path)
            if problem:
                raise EpisodeError(problem)
        except EpisodeError as exc:
            if warn:
                log.warning('skipping bad episode %s: %s', name, exc)
            continue
        if outcome is None or info.outcome == outcome:
            out.append(info)
    out.sort(key=lambda i: (i.start_time, i.episode_id))
    return out


def _resolve(episode) -> EpisodeInfo:
    if isinstance(episode, EpisodeInfo):
        return episode
    return read_episode_info(os.path.expanduser(str(episode)))


def _open_reader(info: EpisodeInfo):
    from rosbags.rosbag2 import Reader
    problem = _bag_problem(info.path)
    if problem:
        raise EpisodeError(problem)
    try:
        reader = Reader(info.bag_path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types; name the file
        raise EpisodeError(f'{info.bag_path}: cannot open bag: {exc}') from exc
    return reader


def _camera_name(topic: str) -> str:
    parts = [p for p in topic.split('/') if p]
    if len(parts) >= 3 and parts[0] == 'camera':
        return parts[1]
    return '_'.join(parts) or topic


def _read_messages(reader, connections, info):
    try:
        yield from reader.messages(connections=connections)
    except EpisodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise EpisodeError(f'{info.bag_path}: corrupt bag data: {exc}') from exc


def topic_stats(episode, gap_factor: float = 3.0) -> dict:
    """Per-topic message counts and gaps: {topic: {count, first_s, last_s, rate_hz,
    median_period_s, max_gap_s, gaps}}; a gap is an interval > gap_factor x the median period."""
    info = _resolve(episode)
    reader = _open_reader(info)
    try:
        stamps = {}
        for conn, t_ns, _raw in _read_messages(reader, reader.connections, info):
            stamps.setdefault(conn.topic, []).append(t_ns)
    finally:
        reader.close()
    return {topic: _stamp_stats(np.asarray(ts, dtype=np.int64), info, gap_factor)
            for topic, ts in sorted(stamps.items())}


def _stamp_stats(ts: np.ndarray, info: EpisodeInfo, gap_factor: float) -> dict:
    start_ns = int(info.start_time * 1e9)
    ts = np.sort(ts)
    d = {'count': int(len(ts)), 'first_s': (int(ts[0]) - start_ns) / 1e9 if len(ts) else None,
         'last_s': (int(ts[-1]) - start_ns) / 1e9 if len(ts) else None,
         'rate_hz': 0.0, 'median_period_s': None, 'max_gap_s': None, 'gaps': 0}
    if len(ts) >= 2:
        dt = np.diff(ts) / 1e9
        med = float(np.median(dt))
        span = (ts[-1] - ts[0]) / 1e9
        d.update(rate_hz=float((len(ts) - 1) / span) if span > 0 else 0.0, median_period_s=med,
                 max_gap_s=float(dt.max()), gaps=int((dt > gap_factor * med).sum()) if med > 0 else 0)
    return d


def load_episode(episode, rate_hz: float | None = None, cameras=None, load_images: bool = True,
                 joint_names=JOINT_NAMES, gap_factor: float = 3.0) -> Episode:
    """Read one finished episode into time-aligned arrays (see the module docstring).

    `episode` is an EpisodeInfo (from list_episodes) or an episode directory. `cameras` limits
    the cameras read (default: every recorded camera). Raises EpisodeError naming the file when
    the bag is missing, truncated or corrupt, or has no joint states.
    """
    info = _resolve(episode)
    if rate_hz is not None and not (np.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f'rate_hz must be a positive number or None, not {rate_hz!r}')
    topics = dict(DEFAULT_TOPICS, **{k: v for k, v in (info.topics or {}).items() if k != 'cameras'})
    reader = _open_reader(info)
    try:
        return _load(reader, info, topics, rate_hz, cameras, load_images, tuple(joint_names), gap_factor)
    finally:
        reader.close()


def _thin(times: np.ndarray, step_ns: float) -> np.ndarray:
    """Sorted message times thinned to about one per step_ns: from the first, the time nearest
    to the previous pick + step_ns, and less than half a step before it."""
    picks = [0]
    while True:
        target = times[picks[-1]] + step_ns
        j = int(np.searchsorted(times, target))
        near = [k for k in (j - 1, j) if picks[-1] < k < len(times) and times[k] > target - step_ns / 2]
        if not near:
            return times[picks]
        picks.append(min(near, key=lambda k: abs(times[k] - target)))


def _load(reader, info, topics, rate_hz, cameras, load_images, joint_names, gap_factor):
    conns = reader.connections
    cam_conns = {}
    for c in conns:
        if c.msgtype == bagio.IMAGE:
            cam_conns[_camera_name(c.topic)] = c
    if cameras is not None:
        missing = [c for c in cameras if c not in cam_conns]
        if missing:
            raise EpisodeError(f'{info.bag_path}: no camera(s) {missing}; recorded: {sorted(cam_conns)}')
        cam_conns = {c: cam_conns[c] for c in cameras}

    # Pass 1: everything but image payloads.
    start_ns = int(round(info.start_time * 1e9))
    state_t, state_v, act_t, act_v, act_src, flag_t, flag_v = [], [], [], [], [], [], []
    cam_t = {name: [] for name in cam_conns}
    cam_topic = {c.topic: name for name, c in cam_conns.items()}
    all_stamps = {}
    order_cache = {}

    def positions(msg, what):
        names = tuple(msg.name)
        pos = np.asarray(msg.position, dtype=np.float64)
        if names and set(joint_names) <= set(names):
            idx = order_cache.get(names)
            if idx is None:
                idx = order_cache[names] = np.array([names.index(n) for n in joint_names])
            if len(pos) != len(names):
                raise EpisodeError(f'{info.bag_path}: {what} has {len(names)} names but {len(pos)} positions')
            return pos[idx]
        if len(pos) != len(joint_names):
            raise EpisodeError(f'{info.bag_path}: {what} has {len(pos)} positions, expected '
                               f'{len(joint_names)} ({", ".join(joint_names)})')
        return pos

    for conn, t_ns, raw in _read_messages(reader, conns, info):
        all_stamps.setdefault(conn.topic, []).append(t_ns)
        try:
            if conn.topic in cam_topic:
                cam_t[cam_topic[conn.topic]].append(t_ns)
            elif conn.topic == topics['joint_states'] and conn.msgtype == bagio.JOINT_STATE:
                state_v.append(positions(bagio.deserialize(raw, bagio.JOINT_STATE), 'joint state'))
                state_t.append(t_ns)
            elif conn.topic == topics['executed_action'] and conn.msgtype == bagio.JOINT_STATE:
                msg = bagio.deserialize(raw, bagio.JOINT_STATE)
                act_v.append(positions(msg, 'executed action'))
                act_t.append(t_ns)
                act_src.append(msg.header.frame_id)
            elif conn.topic == topics['intervention'] and conn.msgtype == bagio.BOOL:
                flag_v.append(bool(bagio.deserialize(raw, bagio.BOOL).data))
                flag_t.append(t_ns)
        except EpisodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - CDR decode errors
            raise EpisodeError(f'{info.bag_path}: cannot decode a {conn.msgtype} on {conn.topic} '
                               f'at {t_ns}: {exc}') from exc
    stats = {topic: _stamp_stats(np.asarray(ts, dtype=np.int64), info, gap_factor)
             for topic, ts in sorted(all_stamps.items())}
    if not state_t:
        raise EpisodeError(f'{info.bag_path}: no joint states on {topics["joint_states"]}')

    def arr(ts):
        a = np.asarray(ts, dtype=np.int64)
        o = np.argsort(a, kind='stable')
        return a[o], o

    state_t, o = arr(state_t)
    state_v = np.asarray(state_v, dtype=np.float64)[o]
    has_actions = bool(act_t)
    if has_actions:
        act_t, o = arr(act_t)
        act_v = np.asarray(act_v, dtype=np.float64)[o]
        act_src = np.asarray(act_src, dtype=object)[o]
    flag_t, o = arr(flag_t)
    flag_v = np.asarray(flag_v, dtype=bool)[o] if len(flag_v) else np.zeros(0, dtype=bool)
    cam_ts = {name: np.sort(np.asarray(ts, dtype=np.int64)) for name, ts in cam_t.items()}
    for name, ts in cam_ts.items():
        if load_images and len(ts) == 0:
            raise EpisodeError(f'{info.bag_path}: camera {name!r} has no images')

    base = act_t if has_actions else state_t
    ticks = base.copy() if rate_hz is None else _thin(base, 1e9 / rate_hz)
    first = [state_t[0]] + ([act_t[0]] if has_actions else [])
    if load_images:
        first += [ts[0] for ts in cam_ts.values()]
    keep = ticks >= max(first)
    dropped = int((~keep).sum())
    ticks = ticks[keep]

    def latest(ts, ticks_):
        return np.searchsorted(ts, ticks_, side='right') - 1

    si = latest(state_t, ticks)
    state = state_v[si].astype(np.float32)
    if has_actions:
        ai = latest(act_t, ticks)
        action = act_v[ai].astype(np.float32)
        source = act_src[ai].astype(str)
    else:
        action = np.full_like(state, np.nan)
        source = np.full(len(ticks), '', dtype=str)
    fi = latest(flag_t, ticks)
    flag = np.where(fi >= 0, flag_v[np.clip(fi, 0, None)] if len(flag_v) else False, False).astype(bool)
    intervention = (source == 'human') if has_actions else flag.copy()
    for arr_, what in ((state, 'joint states'), (action if has_actions else state, 'executed actions')):
        if not np.isfinite(arr_).all():
            raise EpisodeError(f'{info.bag_path}: non-finite values in {what}')

    images = {}
    if load_images and cam_conns and len(ticks):
        need = {name: latest(cam_ts[name], ticks) for name in cam_conns}
        wanted = {name: set(idx.tolist()) for name, idx in need.items()}
        frames = {name: {} for name in cam_conns}
        seen = {name: -1 for name in cam_conns}
        for conn, t_ns, raw in _read_messages(reader, list(cam_conns.values()), info):
            name = cam_topic[conn.topic]
            seen[name] += 1  # reader yields in time order, matching the sorted stamps
            if seen[name] in wanted[name]:
                try:
                    frames[name][seen[name]] = bagio.image_to_rgb(bagio.deserialize(raw, bagio.IMAGE))
                except Exception as exc:  # noqa: BLE001
                    raise EpisodeError(f'{info.bag_path}: bad image on {conn.topic} at {t_ns}: {exc}') from exc
        for name, idx in need.items():
            shapes = {f.shape for f in frames[name].values()}
            if len(shapes) != 1:
                raise EpisodeError(f'{info.bag_path}: camera {name!r} changes image size: {sorted(shapes)}')
            images[name] = np.stack([frames[name][i] for i in idx.tolist()])
    elif load_images:
        images = {name: np.zeros((0, 0, 0, 3), dtype=np.uint8) for name in cam_conns}

    return Episode(info=info, t=(ticks - start_ns) / 1e9, state=state, action=action,
                   intervention=intervention, images=images, action_source=source,
                   intervention_flag=flag, joint_names=joint_names, leading_steps_dropped=dropped,
                   stats=stats)


def read_topic(episode, topic: str) -> list:
    """Every message of one topic as (t seconds since the episode start, decoded message), e.g.
    the policy's predicted chunks on /hiors/policy/action_chunk_raw (Float64MultiArray; use
    `np.asarray(msg.data).reshape([d.size for d in msg.layout.dim])`)."""
    info = _resolve(episode)
    reader = _open_reader(info)
    start_ns = int(round(info.start_time * 1e9))
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        out = []
        for conn, t_ns, raw in _read_messages(reader, conns, info):
            try:
                out.append(((t_ns - start_ns) / 1e9, bagio.deserialize(raw, conn.msgtype)))
            except Exception as exc:  # noqa: BLE001
                raise EpisodeError(f'{info.bag_path}: cannot decode {conn.msgtype} on {topic}: {exc}') from exc
        return out
    finally:
        reader.close()
