"""Recorder benchmark: N cameras (224x224 rgb8, 30 Hz) + joint states (100 Hz) for D seconds.

A publisher process publishes at the stated rates between a `start` and a `success` event; the
recorder node (its own process, default parameters) writes the episode. Reported: messages
published vs recorded per topic (drops), gaps, recorder CPU use (% of one core) and peak RSS,
bag size and write rate, and the time from the end event to a finished episode.json.

    .venv/bin/python bench/bench_recorder.py                 # 3 cameras, 60 s
    .venv/bin/python bench/bench_recorder.py --duration 10   # quick check
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from hiors_common.topics import EPISODE_EVENT, JOINT_STATES, camera_topic, event_qos, reliable_qos

HERE = os.path.dirname(os.path.abspath(__file__))


def publisher(args):
    """Runs in its own process: publish, then print the counts as JSON on the last line."""
    from hiors_common.ros_env import use_local_ros_network
    use_local_ros_network()
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node('bench_publisher')
    qos = reliable_qos(100)
    cams = [f'cam{i}' for i in range(args.cameras)]
    js_pub = node.create_publisher(JointState, JOINT_STATES, qos)
    cam_pubs = {c: node.create_publisher(Image, camera_topic(c), qos) for c in cams}
    ev_pub = node.create_publisher(String, EPISODE_EVENT, event_qos())
    pubs = [js_pub, ev_pub, *cam_pubs.values()]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(p.get_subscription_count() > 0 for p in pubs):
        time.sleep(0.1)
    if not all(p.get_subscription_count() > 0 for p in pubs):
        print(json.dumps({'error': 'recorder never subscribed'}), flush=True)
        return 1
    time.sleep(0.5)
    ev_pub.publish(String(data='start'))
    time.sleep(1.0)
    rng = np.random.default_rng(0)
    # 32 distinct noise frames: no repeats inside an MCAP chunk, so zstd figures are a worst case
    frames = [rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8).tobytes() for _ in range(32)]
    from hiors_common.robot import JOINT_NAMES
    names = list(JOINT_NAMES)
    counts = {JOINT_STATES: 0, **{camera_topic(c): 0 for c in cams}}
    t0 = time.monotonic()
    next_js, next_cam = t0, t0
    cpu0 = time.process_time()
    late = 0.0
    while True:
        now = time.monotonic()
        if now - t0 >= args.duration:
            break
        if now >= next_js:
            m = JointState(name=names, position=[0.001 * counts[JOINT_STATES]] * 7)
            m.header.stamp = node.get_clock().now().to_msg()
            js_pub.publish(m)
            counts[JOINT_STATES] += 1
            late = max(late, now - next_js)
            next_js += 1.0 / args.state_hz
        if now >= next_cam:
            stamp = node.get_clock().now().to_msg()
            for c, p in cam_pubs.items():
                frame = frames[(counts[camera_topic(c)] + 7 * int(c[3:])) % len(frames)]
                m = Image(height=args.size, width=args.size, encoding='rgb8', step=3 * args.size, data=frame)
                m.header.stamp = stamp
                m.header.frame_id = c
                p.publish(m)
                counts[camera_topic(c)] += 1
            late = max(late, now - next_cam)
            next_cam += 1.0 / args.cam_hz
        time.sleep(max(0.0, min(next_js, next_cam) - time.monotonic()))
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    time.sleep(1.0)
    ev_pub.publish(String(data='success'))
    end_event_time = time.time()
    time.sleep(0.5)
    print(json.dumps({'counts': counts, 'wall_s': wall, 'cpu_s': cpu, 'max_late_s': late,
                      'end_event_time': end_event_time}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _proc_cpu(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def _proc_hwm_mb(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmHWM'):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--duration', type=float, default=60.0)
    p.add_argument('--cameras', type=int, default=3)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--cam-hz', type=float, default=30.0)
    p.add_argument('--state-hz', type=float, default=100.0)
    p.add_argument('--dir', default='', help='episode directory (default: a temporary one, removed)')
    p.add_argument('--compression', default='', help="recorder compression: '' or 'zstd'")
    p.add_argument('--publisher', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publisher:
        return publisher(args)

    sys.path.insert(0, os.path.join(HERE, '..', 'src', 'hiors_common'))
    from hiors_common.ros_env import use_local_ros_network
    env = use_local_ros_network(domain_id=None, env=dict(os.environ))
    root = args.dir or tempfile.mkdtemp(prefix='hiors-bench-recorder-')
    cams = [f'cam{i}' for i in range(args.cameras)]
    rec_cmd = [sys.executable, '-m', 'hiors_recorder.recorder_node', '--ros-args',
               '-p', f'episode_dir:={root}', '-p', f'cameras:=[{", ".join(cams)}]',
               '-p', f"compression:='{args.compression}'"]
    log_path = os.path.join(tempfile.gettempdir(), f'hiors-bench-recorder-{os.getpid()}.log')
    log = open(log_path, 'w')
    rec = subprocess.Popen(rec_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(2.0)
        cpu_before = _proc_cpu(rec.pid)
        t_before = time.monotonic()
        samples = []                      # (monotonic, cpu seconds) every 0.5 s: peak 1-s load
        sampling = threading.Event()

        def sample():
            while not sampling.wait(0.5):
                try:
                    samples.append((time.monotonic(), _proc_cpu(rec.pid)))
                except OSError:
                    return
        threading.Thread(target=sample, daemon=True).start()
        pub = subprocess.run([sys.executable, os.path.abspath(__file__), '--publisher',
                              '--duration', str(args.duration), '--cameras', str(args.cameras),
                              '--size', str(args.size), '--cam-hz', str(args.cam_hz),
                              '--state-hz', str(args.state_hz)],
                             env=env, capture_output=True, text=True, timeout=args.duration + 120)
        lines = [ln for ln in pub.stdout.splitlines() if ln.startswith('{')]
        if pub.returncode != 0 or not lines:
            print('publisher failed:', pub.stdout[-2000:], pub.stderr[-2000:])
            return 1
        result = json.loads(lines[-1])
        if 'error' in result:
            print('publisher:', result['error'])
            return 1
        sys.path.insert(0, os.path.join(HERE, '..', 'src', 'hiors_recorder'))
        from hiors_recorder.dataset import list_episodes, topic_stats
        deadline = time.monotonic() + 120
        infos = []
        while time.monotonic() < deadline:
            infos = list_episodes(root)
            if infos:
                break
            time.sleep(0.05)
        finish_latency = (os.path.getmtime(os.path.join(infos[0].path, 'episode.json'))
                          - result['end_event_time']) if infos else float('nan')
        sampling.set()
        cpu_s = _proc_cpu(rec.pid) - cpu_before
        wall_s = time.monotonic() - t_before
        hwm = _proc_hwm_mb(rec.pid)
        if not infos:
            print('no finished episode; recorder log:\n' + open(log_path).read()[-3000:])
            return 1
        info = infos[0]
        bag_bytes = sum(os.path.getsize(os.path.join(info.bag_path, f)) for f in os.listdir(info.bag_path))
        stats = topic_stats(info)
        print(f'recorder benchmark: {args.cameras} cameras {args.size}x{args.size} rgb8 @ {args.cam_hz:g} Hz '
              f'+ joint states @ {args.state_hz:g} Hz for {args.duration:g} s (compression: '
              f'{args.compression or "none"})')
        print(f'{"topic":28s} {"published":>9s} {"recorded":>9s} {"dropped":>8s} {"rate_hz":>8s} {"max_gap_ms":>10s}')
        total_drop = 0
        for topic, n in result['counts'].items():
            got = info.topic_counts.get(topic, 0)
            total_drop += n - got
            st = stats.get(topic, {})
            print(f'{topic:28s} {n:9d} {got:9d} {n - got:8d} {st.get("rate_hz", 0):8.1f} '
                  f'{1000 * (st.get("max_gap_s") or 0):10.1f}')
        print(f'messages dropped: {total_drop} (recorder-side drops counted: {sum(info.dropped_messages.values())})')
        print(f'recorder CPU: {cpu_s:.1f} s over {wall_s:.1f} s = {100 * cpu_s / wall_s:.0f}% of one core; '
              f'peak RSS {hwm:.0f} MB')
        peak = max(((c2 - c1) / (t2 - t1) for (t1, c1), (t2, c2) in zip(samples, samples[2:])), default=0.0)
        print(f'recorder CPU peak over ~1 s windows: {100 * peak:.0f}% of one core')
        print(f'publisher: {result["wall_s"]:.1f} s, CPU {result["cpu_s"]:.1f} s, worst lateness '
              f'{1000 * result["max_late_s"]:.1f} ms')
        print(f'bag: {bag_bytes / 2**20:.0f} MB, {bag_bytes / 2**20 / args.duration:.1f} MB/s; '
              f'episode.json {finish_latency:.2f} s after the end event (includes event_grace_s)')
        return 0 if total_drop == 0 else 2
    finally:
        rec.terminate()
        try:
            rec.wait(30)
        except subprocess.TimeoutExpired:
            rec.kill()
        log.close()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
