"""Export episodes to the LeRobotDataset v3.0 layout (written from the published format
description; LeRobot itself is not needed), and read such a dataset back for verification.

    <out>/meta/info.json                                   codebase_version "v3.0", features, paths
    <out>/meta/stats.json                                  per-feature min/max/mean/std/count
    <out>/meta/tasks.parquet                               task (pandas index) -> task_index
    <out>/meta/episodes/chunk-000/file-000.parquet         one row per episode (lengths, offsets)
    <out>/data/chunk-000/file-000.parquet                  one row per frame
    <out>/videos/observation.images.<cam>/chunk-000/file-000.mp4   all episodes, concatenated

Frames are the episode resampled at `fps` by `load_episode(rate_hz=fps)` (sample-and-hold, see
hiors_recorder.dataset). Columns: observation.state, action (float32 [7]), timestamp (float32,
frame_index / fps), frame_index, episode_index, index, task_index (int64), next.reward (float32,
episode reward on the last frame, else 0), next.done (bool), is_intervention (bool: the human was
in control). Videos are AV1 (libsvtav1, yuv420p, g=2, crf=30 - LeRobot's defaults) through PyAV;
where libsvtav1 is missing, H.264 (libx264). Everything goes into chunk 000 / file 000 (fine up to
LeRobot's 1000-files-per-chunk and size limits for the datasets this project produces).
"""
import json
import os

import numpy as np

from hiors_common.atomic import atomic_path, atomic_write_json

from .dataset import JOINT_NAMES, load_episode

CODEBASE_VERSION = 'v3.0'
DATA_PATH = 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet'
VIDEO_PATH = 'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4'
EPISODES_PATH = 'meta/episodes/chunk-000/file-000.parquet'


def _video_codec() -> str:
    import av
    for codec in ('libsvtav1', 'libx264'):
        try:
            av.codec.Codec(codec, 'w')
            return codec
        except Exception:  # noqa: BLE001
            continue
    raise RuntimeError('PyAV has neither libsvtav1 nor libx264: cannot write LeRobot videos')


class _VideoWriter:
    def __init__(self, path, fps, width, height):
        import av
        os.environ.setdefault('SVT_LOG', '1')   # SVT-AV1 prints banners to stderr otherwise
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.codec = _video_codec()
        self.container = av.open(path, 'w')
        self.stream = self.container.add_stream(self.codec, rate=int(round(fps)))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, 'yuv420p'
        self.stream.options = {'g': '2', 'crf': '30', 'preset': '10'} if self.codec == 'libsvtav1' \
            else {'g': '2', 'crf': '23'}
        self.frames = 0

    def add(self, rgb):
        import av
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format='rgb24')
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self):
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _stats(values: np.ndarray) -> dict:
    v = values.astype(np.float64)
    return {'min': v.min(0).tolist(), 'max': v.max(0).tolist(), 'mean': v.mean(0).tolist(),
            'std': v.std(0).tolist(), 'count': [int(len(v))]}


def _image_stats(frames: list) -> dict:
    # LeRobot keeps image stats per channel, shape (3, 1, 1), in [0, 1].
    px = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(np.float64) / 255.0
    shape = lambda a: [[[float(x)]] for x in a]  # noqa: E731
    return {'min': shape(px.min(0)), 'max': shape(px.max(0)), 'mean': shape(px.mean(0)),
            'std': shape(px.std(0)), 'count': [int(sum(len(f) for f in frames))]}


def _write_tasks(path, tasks):
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.table({'task_index': pa.array(list(range(len(tasks))), pa.int64()),
                      'task': pa.array(tasks, pa.string())})
    # pandas metadata so pd.read_parquet gives LeRobot's frame: index 'task', column task_index.
    meta = {'index_columns': ['task'], 'column_indexes': [],
            'columns': [{'name': 'task_index', 'field_name': 'task_index', 'pandas_type': 'int64',
                         'numpy_type': 'int64', 'metadata': None},
                        {'name': 'task', 'field_name': 'task', 'pandas_type': 'unicode',
                         'numpy_type': 'object', 'metadata': None}],
            'creator': {'library': 'pyarrow', 'version': pa.__version__}, 'pandas_version': '2.2.0'}
    table = table.replace_schema_metadata({b'pandas': json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def export_lerobot(episodes, out_dir: str, fps: float = 10.0, robot_type: str = '',
                   cameras=None, progress=None) -> dict:
    """Write `episodes` (EpisodeInfo list or directories) as a LeRobotDataset v3.0 at `out_dir`
    (must not exist or be empty). Returns the info.json dict."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f'{out_dir} exists and is not empty')
    if not episodes:
        raise ValueError('no episodes to export')
    os.makedirs(os.path.join(out_dir, 'meta', 'episodes', 'chunk-000'), exist_ok=True)
    os.makedirs(os.path.join(out_dir, 'data', 'chunk-000'), exist_ok=True)

    tasks, cols, ep_rows = [], {k: [] for k in (
        'observation.state', 'action', 'timestamp', 'frame_index', 'episode_index', 'index',
        'task_index', 'next.reward', 'next.done', 'is_intervention')}, []
    writers, cam_names, shapes, img_samples = {}, None, {}, {}
    cursor = 0
    for ei, ep_ref in enumerate(episodes):
        ep = load_episode(ep_ref, rate_hz=fps, cameras=cameras)
        n = len(ep)
        if n == 0:
            raise ValueError(f'{ep.info.path}: no frames at {fps} Hz')
        if cam_names is None:
            cam_names = sorted(ep.images)
        elif sorted(ep.images) != cam_names:
            raise ValueError(f'{ep.info.path}: cameras {sorted(ep.images)} differ from {cam_names}')
        task = ep.info.task or 'default'
        if task not in tasks:
            tasks.append(task)
        ti = tasks.index(task)
        cols['observation.state'] += ep.state.tolist()
        cols['action'] += ep.action.tolist()
        cols['timestamp'] += (np.arange(n) / fps).astype(np.float32).tolist()
        cols['frame_index'] += list(range(n))
        cols['episode_index'] += [ei] * n
        cols['index'] += list(range(cursor, cursor + n))
        cols['task_index'] += [ti] * n
        cols['next.reward'] += [0.0] * (n - 1) + [float(ep.info.reward)]
        cols['next.done'] += [False] * (n - 1) + [True]
        cols['is_intervention'] += ep.intervention.tolist()
        row = {'episode_index': ei, 'tasks': [task], 'length': n,
               'data/chunk_index': 0, 'data/file_index': 0,
               'dataset_from_index': cursor, 'dataset_to_index': cursor + n,
               'meta/episodes/chunk_index': 0, 'meta/episodes/file_index': 0,
               'hiors/episode_id': ep.info.episode_id, 'hiors/outcome': ep.info.outcome}
        for cam in cam_names:
            key = f'observation.images.{cam}'
            frames = ep.images[cam]
            if key not in writers:
                shapes[key] = frames.shape[1:]
                writers[key] = _VideoWriter(os.path.join(out_dir, VIDEO_PATH.format(
                    video_key=key, chunk_index=0, file_index=0)), fps, frames.shape[2], frames.shape[1])
                img_samples[key] = []
            elif frames.shape[1:] != shapes[key]:
                raise ValueError(f'{ep.info.path}: camera {cam} size {frames.shape[1:]} != {shapes[key]}')
            from_ts = writers[key].frames / fps
            for f in frames:
                writers[key].add(f)
            img_samples[key].append(frames[:: max(1, n // 10)])
            row.update({f'videos/{key}/chunk_index': 0, f'videos/{key}/file_index': 0,
                        f'videos/{key}/from_timestamp': from_ts,
                        f'videos/{key}/to_timestamp': writers[key].frames / fps})
        ep_rows.append(row)
        cursor += n
        if progress:
            progress(ei + 1, len(episodes))
    codec = None
    for w in writers.values():
        w.close()
        codec = w.codec

    dim = len(JOINT_NAMES)
    vec = pa.list_(pa.float32(), dim)
    table = pa.table({
        'observation.state': pa.array(cols['observation.state'], vec),
        'action': pa.array(cols['action'], vec),
        'timestamp': pa.array(cols['timestamp'], pa.float32()),
        'frame_index': pa.array(cols['frame_index'], pa.int64()),
        'episode_index': pa.array(cols['episode_index'], pa.int64()),
        'index': pa.array(cols['index'], pa.int64()),
        'task_index': pa.array(cols['task_index'], pa.int64()),
        'next.reward': pa.array(cols['next.reward'], pa.float32()),
        'next.done': pa.array(cols['next.done'], pa.bool_()),
        'is_intervention': pa.array(cols['is_intervention'], pa.bool_()),
    })
    with atomic_path(os.path.join(out_dir, DATA_PATH.format(chunk_index=0, file_index=0))) as tmp:
        pq.write_table(table, tmp)

    stats = {'observation.state': _stats(np.asarray(cols['observation.state'])),
             'action': _stats(np.asarray(cols['action']))}
    for key in ('timestamp', 'frame_index', 'episode_index', 'index', 'task_index', 'next.reward'):
        stats[key] = _stats(np.asarray(cols[key], dtype=np.float64)[:, None])
    for key, samples in img_samples.items():
        stats[key] = _image_stats(samples)
    # Per-episode rows carry stats too in LeRobot; the aggregate in stats.json is what training uses.
    ep_table = pa.Table.from_pylist(ep_rows)
    with atomic_path(os.path.join(out_dir, EPISODES_PATH)) as tmp:
        pq.write_table(ep_table, tmp)
    _write_tasks(os.path.join(out_dir, 'meta', 'tasks.parquet'), tasks)

    scalar = lambda dtype: {'dtype': dtype, 'shape': [1], 'names': None}  # noqa: E731
    features = {
        'observation.state': {'dtype': 'float32', 'shape': [dim], 'names': list(JOINT_NAMES)},
        'action': {'dtype': 'float32', 'shape': [dim], 'names': list(JOINT_NAMES)},
        'timestamp': scalar('float32'), 'frame_index': scalar('int64'),
        'episode_index': scalar('int64'), 'index': scalar('int64'), 'task_index': scalar('int64'),
        'next.reward': scalar('float32'), 'next.done': scalar('bool'), 'is_intervention': scalar('bool'),
    }
    for key, (h, w, c) in shapes.items():
        features[key] = {'dtype': 'video', 'shape': [h, w, c], 'names': ['height', 'width', 'channels'],
                         'info': {'video.height': h, 'video.width': w,
                                  'video.codec': 'av1' if codec == 'libsvtav1' else 'h264',
                                  'video.pix_fmt': 'yuv420p', 'video.is_depth_map': False,
                                  'video.fps': fps, 'video.channels': c, 'has_audio': False}}
    info = {'codebase_version': CODEBASE_VERSION, 'robot_type': robot_type or None,
            'total_episodes': len(ep_rows), 'total_frames': cursor, 'total_tasks': len(tasks),
            'chunks_size': 1000, 'data_files_size_in_mb': 100, 'video_files_size_in_mb': 500,
            'fps': fps, 'splits': {'train': f'0:{len(ep_rows)}'},
            'data_path': DATA_PATH, 'video_path': VIDEO_PATH if shapes else None, 'features': features}
    # info.json last: a directory with it holds a complete export (the videos were closed above).
    atomic_write_json(os.path.join(out_dir, 'meta', 'stats.json'), stats, indent=4, sort_keys=False)
    atomic_write_json(os.path.join(out_dir, 'meta', 'info.json'), info, indent=4, sort_keys=False)
    return info


def read_lerobot(out_dir: str) -> dict:
    """Read an exported dataset back: {'info', 'frames' (pyarrow table as dict of numpy),
    'episodes' (list of dict), 'tasks', 'videos' {key: (N, H, W, 3) uint8}}. Checks that every
    video holds exactly one frame per data row and that the episode offsets are consistent."""
    import av
    import pyarrow.parquet as pq
    with open(os.path.join(out_dir, 'meta', 'info.json')) as f:
        info = json.load(f)
    if info.get('codebase_version') != CODEBASE_VERSION:
        raise ValueError(f'{out_dir}: codebase_version {info.get("codebase_version")!r} != {CODEBASE_VERSION}')
    data = pq.read_table(os.path.join(out_dir, info['data_path'].format(chunk_index=0, file_index=0)))
    frames = {name: np.asarray(data.column(name).to_pylist()) for name in data.column_names}
    episodes = pq.read_table(os.path.join(out_dir, EPISODES_PATH)).to_pylist()
    tasks = pq.read_table(os.path.join(out_dir, 'meta', 'tasks.parquet')).to_pylist()
    if info['total_frames'] != len(data) or info['total_episodes'] != len(episodes):
        raise ValueError(f'{out_dir}: info.json totals do not match the parquet files')
    for ep in episodes:
        idx = frames['episode_index'][ep['dataset_from_index']:ep['dataset_to_index']]
        if len(idx) != ep['length'] or not (idx == ep['episode_index']).all():
            raise ValueError(f'{out_dir}: episode {ep["episode_index"]} offsets inconsistent')
    videos = {}
    for key, feat in info['features'].items():
        if feat['dtype'] != 'video':
            continue
        path = os.path.join(out_dir, info['video_path'].format(video_key=key, chunk_index=0, file_index=0))
        with av.open(path) as container:
            videos[key] = np.stack([fr.to_ndarray(format='rgb24') for fr in container.decode(video=0)])
        if len(videos[key]) != len(data):
            raise ValueError(f'{path}: {len(videos[key])} frames for {len(data)} rows')
    return {'info': info, 'frames': frames, 'episodes': episodes, 'tasks': tasks, 'videos': videos}
