"""Dashboard node as its own process over DDS; the page checked over HTTP and in headless Chromium."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Bool, String

from hiors_common.testing import NodeProcess
from hiors_common.topics import CHECKPOINT, DIAGNOSTICS, EPISODE_EVENT, INTERVENTION, latched_qos


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url):
    return json.loads(urllib.request.urlopen(url, timeout=2).read())


def test_dashboard_node_over_dds_and_browser(test_node):
    port = _free_port()
    url = f'http://127.0.0.1:{port}/'
    ev = test_node.create_publisher(String, EPISODE_EVENT, 10)
    iv = test_node.create_publisher(Bool, INTERVENTION, 10)
    dg = test_node.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
    with NodeProcess('hiors.dashboard_node', ros_args=['-p', f'port:={port}']) as proc:
        deadline = time.monotonic() + 30
        while True:   # wait for HTTP up and DDS matched
            assert proc.alive(), proc.log()
            try:
                _get(url + 'api/state')
                if ev.get_subscription_count() and iv.get_subscription_count() and dg.get_subscription_count():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, proc.log()
            rclpy.spin_once(test_node, timeout_sec=0.1)
        for outcome, human in [('success', True), ('failure', False), ('success', False)]:
            ev.publish(String(data='start'))
            time.sleep(0.05)
            if human:
                iv.publish(Bool(data=True))
                time.sleep(0.1)
                iv.publish(Bool(data=False))
            time.sleep(0.05)
            ev.publish(String(data=outcome))
            time.sleep(0.05)
        st = DiagnosticStatus(name='trainer', values=[
            KeyValue(key='loss', value='0.125'), KeyValue(key='accepted', value='2'),
            KeyValue(key='rejected', value='1'), KeyValue(key='version', value='4')])
        dg.publish(DiagnosticArray(status=[st]))
        deadline = time.monotonic() + 10
        while True:
            s = _get(url + 'api/state')
            if s['episodes']['total'] == 3 and s['trainer'].get('loss') == 0.125:
                break
            assert time.monotonic() < deadline, (s, proc.log())
            time.sleep(0.1)
        assert abs(s['episodes']['success_rate'] - 2 / 3) < 1e-9
        assert abs(s['episodes']['takeover_rate'] - 1 / 3) < 1e-9
        assert s['trainer'] == {'loss': 0.125, 'accepted': 2.0, 'rejected': 1.0, 'version': 4.0}

        chromium = shutil.which('chromium') or shutil.which('chromium-browser')
        if chromium is None:
            pytest.skip('chromium not installed (apt-get install -y chromium)')
        with tempfile.TemporaryDirectory() as tmp:
            shot = os.environ.get('HIORS_DASHBOARD_SCREENSHOT', os.path.join(tmp, 'shot.png'))
            common = [chromium, '--headless', '--no-sandbox', '--disable-gpu',
                      '--disable-background-networking', '--disable-component-update', '--disable-sync',
                      '--no-first-run', f'--user-data-dir={tmp}/profile', '--window-size=1200,900',
                      '--virtual-time-budget=5000']
            dom = subprocess.run(common + ['--dump-dom', url], capture_output=True, text=True, timeout=45).stdout
            assert 'id="success_rate">66.7%' in dom, dom[:2000]
            assert '33.3%' in dom
            subprocess.run(common + [f'--screenshot={shot}', url], capture_output=True, timeout=45)
            assert os.path.getsize(shot) > 1000


def test_dashboard_shows_the_real_trainer(tmp_path):
    """The real trainer node on recorded episodes (2 successes, 1 failure) and the real dashboard
    node: the dashboard's HTTP state carries a finite loss, accepted / rejected episodes and a
    loss series (the telemetry contract, hiors_trainer.telemetry)."""
    import math

    from hiors_recorder.synthetic import write_synthetic_episode
    from hiors_trainer.telemetry import TELEMETRY_KEYS
    eps = tmp_path / 'eps'
    for i, outcome in enumerate(['success', 'success', 'failure']):
        write_synthetic_episode(str(eps), steps=20, outcome=outcome, seed=i, start_ns=int(1e18) + i * int(1e10))
    port = _free_port()
    url = f'http://127.0.0.1:{port}/api/state'
    yaml_path = os.path.join(os.path.dirname(__file__), '..', '..', 'hiors_trainer', 'config', 'trainer.yaml')
    trainer = NodeProcess('hiors_trainer.trainer_node', env={'OMP_NUM_THREADS': '1'},
                          log_path=str(tmp_path / 'trainer.log'),
                          ros_args=['--params-file', yaml_path, '-p', f'episode_dir:={eps}',
                                    '-p', f'out_dir:={tmp_path / "out"}', '-p', 'batch_size:=2',
                                    '-p', 'checkpoint_every_steps:=5', '-p', 'replan_stride:=4'])
    dashboard = NodeProcess('hiors.dashboard_node', ros_args=['-p', f'port:={port}'],
                            log_path=str(tmp_path / 'dashboard.log'))
    with trainer, dashboard:
        deadline = time.monotonic() + 90
        while True:
            assert trainer.alive(), trainer.log()[-3000:]
            assert dashboard.alive(), dashboard.log()[-3000:]
            try:
                s = _get(url)
                t = s['trainer']
                if (t.get('step', 0) >= 3 and t.get('version', 0) >= 1 and len(s['series'].get('loss', [])) >= 2
                        and t.get('accepted') == 2):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (trainer.log()[-2000:], dashboard.log()[-2000:])
            time.sleep(0.3)
    assert set(t) == set(TELEMETRY_KEYS), t
    assert math.isfinite(t['loss']) and t['loss'] > 0 and t['rejected'] == 1 and t['samples_per_s'] >= 0
    assert len(s['series']['accepted']) >= 1 and len(s['series']['rejected']) >= 1


def test_dashboard_keeps_a_rejected_checkpoint_visible(tmp_path, test_node):
    """Issue 14 (4): the real policy node rejects a wrongly signed checkpoint; the real dashboard
    shows the policy at ERROR with that message and its time for the hold time (here 4 s), while
    the policy itself goes back to publishing OK/WARN every second."""
    from hiors_policy.checkpoint_transport import build_manifest
    key = tmp_path / 'key'
    key.write_text('dashboard-test-key')
    bogus = tmp_path / 'bogus.safetensors'
    bogus.write_bytes(b'not weights')
    port = _free_port()
    url = f'http://127.0.0.1:{port}/api/state'
    pub = test_node.create_publisher(String, CHECKPOINT, latched_qos())
    policy = NodeProcess('hiors_policy.policy_node', ros_args=[
        '-r', '__node:=policy', '-p', f'checkpoint_key_file:={key}', '-p', 'diagnostics_hold_s:=4.0',
        '-p', f'checkpoint_dirs:=[{tmp_path}]'], log_path=str(tmp_path / 'policy.log'))
    dashboard = NodeProcess('hiors.dashboard_node', ros_args=['-p', f'port:={port}'],
                            log_path=str(tmp_path / 'dashboard.log'))

    def node_state():
        try:
            return _get(url)['nodes'].get('policy')
        except OSError:
            return None
    with policy, dashboard:
        deadline = time.monotonic() + 60
        while (node_state() or {}).get('level') not in ('OK', 'WARN'):
            assert time.monotonic() < deadline, (policy.log()[-2000:], dashboard.log()[-2000:])
            time.sleep(0.2)
        pub.publish(String(data=json.dumps(build_manifest(str(bogus), 'v-forged', b'wrong-key'))))
        seen = []
        deadline = time.monotonic() + 30
        while not seen:
            rclpy.spin_once(test_node, timeout_sec=0.1)
            st = node_state() or {}
            if st.get('level') == 'ERROR':
                seen.append((time.monotonic(), st))
            assert time.monotonic() < deadline, policy.log()[-3000:]
        t0 = seen[0][0]
        while time.monotonic() < t0 + 3.0:          # 1 Hz OK statuses keep coming: still ERROR
            st = node_state()
            assert st['level'] == 'ERROR' and 'signature' in st.get('last_error', ''), st
            assert st.get('last_error_time'), st
            time.sleep(0.25)
        deadline = time.monotonic() + 8
        while node_state()['level'] == 'ERROR':      # then the policy's current level again
            assert time.monotonic() < deadline, node_state()
            time.sleep(0.25)
        assert 'signature' in node_state()['last_error'], 'the last error stays listed'
