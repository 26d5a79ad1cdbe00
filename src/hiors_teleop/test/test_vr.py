"""VR: frame mapping, message validation, the page server with a Python websocket client, and the
real page in headless Chromium sending emulated controller poses (skipped where no Chromium)."""
import json
import math
import shutil
import subprocess
import tempfile
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip('websockets', reason='the VR server needs the websockets package (requirements.txt)')

from hiors_teleop.teleop_core import quat_angle
from hiors_teleop.vr_mapping import VRMapConfig, VRMapper, parse_message, xr_to_robot
from hiors_teleop.vr_server import VRServer

IDENT = [0.0, 0.0, 0.0, 1.0]


def pose(pos, quat=IDENT, trigger=0.0, buttons=()):
    return {'type': 'pose', 'pos': list(pos), 'quat': list(quat), 'trigger': trigger, 'buttons': list(buttons)}


def test_xr_frame_to_robot_frame():
    p, q = xr_to_robot([0, 0, -1], IDENT)
    assert np.allclose(p, [1, 0, 0]), 'WebXR forward (-z) is robot +x'
    assert np.allclose(xr_to_robot([1, 0, 0], IDENT)[0], [0, -1, 0]), 'right is robot -y'
    assert np.allclose(xr_to_robot([0, 1, 0], IDENT)[0], [0, 0, 1]), 'up is up'
    assert np.allclose(q, [1, 0, 0, 0])
    s = math.sin(math.pi / 4)
    _, q = xr_to_robot([0, 0, 0], [0, s, 0, s])    # 90 deg about XR up (y) = about robot z
    assert np.allclose(q, [s, 0, 0, s])


@pytest.mark.parametrize('msg,why', [
    ({'type': 'pose', 'pos': [0, 0], 'quat': IDENT}, r'pos\[3\]'),
    ({'type': 'pose', 'pos': [0, math.nan, 0], 'quat': IDENT}, 'NaN'),
    ({'type': 'pose', 'pos': [0, 0, 0], 'quat': [0, 0, 0, 0]}, 'unit'),
    ({'type': 'pose', 'pos': [0, 50, 0], 'quat': IDENT}, '10 m'),
    ({'type': 'event', 'action': 'explode'}, 'unknown event'),
    ({'type': 'nope'}, 'unknown message'),
    ([1, 2], 'object'),
])
def test_bad_messages_rejected(msg, why):
    with pytest.raises(ValueError, match=why):
        parse_message(msg)


def test_mapper_anchor_offset_and_buttons():
    m = VRMapper(VRMapConfig(position_scale=2.0, max_offset_m=0.3))
    assert not m.map(parse_message(pose([0, 1, 0]))).takeover
    inp = m.map(parse_message(pose([0, 1, 0], trigger=1.0)))
    assert inp.takeover and np.allclose(inp.ee_offset[0], 0)
    inp = m.map(parse_message(pose([0.0, 1.05, -0.05], trigger=1.0)))
    assert np.allclose(inp.ee_offset[0], [0.1, 0.0, 0.1]), 'scaled x2, in the robot frame'
    inp = m.map(parse_message(pose([0.0, 1.0, -1.0], trigger=1.0)))
    assert np.linalg.norm(inp.ee_offset[0]) == pytest.approx(0.3), 'offset clamped'
    s = math.sin(0.1)
    inp = m.map(parse_message(pose([0, 1, 0], [0, s, 0, math.cos(0.1)], trigger=1.0, buttons=[1, 0, 0, 0, 1, 1])))
    assert quat_angle(inp.ee_offset[1]) == pytest.approx(0.2)
    assert inp.gripper_toggle and inp.events == ['success']
    assert not m.map(parse_message(pose([0, 1, 0], trigger=1.0, buttons=[1, 0, 0, 0, 1, 1]))).gripper_toggle
    m.map(parse_message(pose([0, 1, 0], trigger=0.0)))
    inp = m.map(parse_message(pose([0.2, 1, 0], trigger=1.0)))
    assert np.allclose(inp.ee_offset[0], 0), 're-anchored at the new press'


def test_server_http_and_websocket_protocol():
    from websockets.sync.client import connect
    server = VRServer(port=0).start()
    try:
        page = urllib.request.urlopen(server.url, timeout=5).read().decode()
        assert 'navigator.xr' in page and '/ws' in page
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + 'nothing', timeout=5)
        with connect(f'ws://127.0.0.1:{server.port}/ws') as ws:
            ws.send(json.dumps({'type': 'hello', 'mode': 'emulated', 'agent': 'pytest'}))
            ws.send(json.dumps(pose([0.1, 1.0, -0.2], trigger=1.0)))
            ws.send('{not json')
            ws.send(json.dumps({'type': 'pose', 'pos': [0, math.inf, 0], 'quat': IDENT}))
            ws.send(json.dumps({'type': 'event', 'action': 'failure'}))
            status = json.loads(ws.recv(timeout=5))
            assert status['type'] == 'status'
            deadline = time.monotonic() + 5
            while server.received < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            sample, _, events, clients = server.take()
            assert clients == 1 and sample['pos'] == [0.1, 1.0, -0.2] and events == ['failure']
            assert server.rejected == 2 and server.hello['agent'] == 'pytest'
        deadline = time.monotonic() + 5
        while server.take()[3] and time.monotonic() < deadline:
            time.sleep(0.01)
        sample, _, _, clients = server.take()
        assert clients == 0 and sample is None, 'no stale pose after a disconnect'
    finally:
        server.stop()


def chromium():
    return shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')


def start_chromium(url):
    user_dir = tempfile.mkdtemp(prefix='hiors-chromium-')
    cmd = [chromium(), '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-extensions',
           '--disable-default-apps', f'--user-data-dir={user_dir}', url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True), user_dir


def stop_chromium(proc, user_dir):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    shutil.rmtree(user_dir, ignore_errors=True)


@pytest.mark.skipif(chromium() is None, reason='no Chromium on this machine (apt-get install chromium)')
def test_page_in_headless_chromium_sends_poses():
    server = VRServer(port=0).start()
    proc, user_dir = start_chromium(server.url + '?script=1&dx=0.1&dz=-0.05&seconds=0.6&hold=0.4&label=success')
    triggers, xs = [], []
    events = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            sample, _, ev, _ = server.take()
            events += ev
            if sample is not None:
                triggers.append(sample['trigger'])
                xs.append(sample['pos'][0])
            if server.hello and 'script-done' in server.hello['agent'] and events:
                break
            time.sleep(0.01)
        assert server.hello and 'HeadlessChrome' in server.hello['agent'], server.hello
        assert server.hello['mode'] == 'emulated'
        assert 1.0 in triggers and triggers[-1] == 0.0, 'trigger pressed then released'
        assert xs[0] == pytest.approx(0.0) and max(xs) == pytest.approx(0.1), xs[-5:]
        assert events == ['success'] and server.rejected == 0
    finally:
        stop_chromium(proc, user_dir)
        server.stop()


# Stands in for a WebXR runtime (none can exist on a headless machine): a session whose right
# controller pulls the trigger at 0.5 s and moves 6 cm forward (-z) over 1 s, released at 2 s; a
# left controller with its trigger held must be ignored. The page's own XR code path does the rest.
FAKE_XR = """
(() => {
  const t0 = performance.now();
  const T = () => (performance.now() - t0) / 1000;
  const btn = (on) => ({ value: on ? 1 : 0, pressed: on });
  window.XRWebGLLayer = class { constructor() { this.framebuffer = null; } };
  const right = { handedness: 'right', gripSpace: { hand: 'right' },
    get gamepad() {
      const on = T() > 0.5 && T() < 2.0;
      return { buttons: [btn(on), btn(false), btn(false), btn(false), btn(false), btn(false)] }; } };
  const left = { handedness: 'left', gripSpace: { hand: 'left' }, gamepad: { buttons: [btn(true)] } };
  const frame = { getPose(space) {
    if (space.hand !== 'right') {
      return { transform: { position: { x: 9, y: 9, z: 9 }, orientation: { x: 0, y: 0, z: 0, w: 1 } } };
    }
    const a = Math.min(1, Math.max(0, T() - 0.5));
    return { transform: { position: { x: 0, y: 1.0, z: -0.3 - 0.06 * a },
                          orientation: { x: 0, y: 0, z: 0, w: 1 } } }; } };
  const session = { inputSources: [left, right], renderState: { baseLayer: null }, onend: null,
    updateRenderState(s) { this.renderState = s; }, async requestReferenceSpace() { return {}; },
    requestAnimationFrame(cb) { setTimeout(() => cb(performance.now(), frame), 11); } };
  Object.defineProperty(navigator, 'xr', { configurable: true, value: {
    isSessionSupported: async () => true, requestSession: async () => session } });
  addEventListener('load', () => setTimeout(() => document.getElementById('enter').click(), 200));
})();
"""


@pytest.mark.skipif(chromium() is None, reason='no Chromium on this machine (apt-get install chromium)')
def test_page_xr_code_path_with_stand_in_runtime():
    server = VRServer(port=0, head_script=FAKE_XR).start()
    proc, user_dir = start_chromium(server.url)
    samples = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            sample, _, _, _ = server.take()
            if sample is not None and (not samples or sample is not samples[-1]):
                samples.append(sample)
            if server.hello and server.hello['mode'] == 'xr' and any(s['trigger'] for s in samples) \
                    and samples[-1]['trigger'] == 0 and samples[-1]['pos'][2] < -0.35:
                break
            time.sleep(0.005)
        assert server.hello and server.hello['mode'] == 'xr', server.hello
        assert all(s['pos'][0] != 9 for s in samples), 'the left controller was ignored'
        pulled = [s for s in samples if s['trigger'] == 1.0]     # only the XR path pulls the trigger here
        assert pulled and pulled[-1]['pos'][2] == pytest.approx(-0.36, abs=0.005), pulled[-1:]
        assert samples[-1]['trigger'] == 0.0 and server.rejected == 0
    finally:
        stop_chromium(proc, user_dir)
        server.stop()


SIM_HOME = [0.0, 0.5, 1.6, 0.0, 1.04, 0.0, 0.035]


def _vr_url(proc, node, timeout=30.0):
    from hiors_common.testing import spin_until
    found = {}

    def check():
        for line in proc.log().splitlines():
            if 'VR_SERVER ' in line:
                found['url'] = json.loads(line.split('VR_SERVER ', 1)[1])['url']
        return 'url' in found
    assert spin_until(node, check, timeout), proc.log()
    return found['url']


@pytest.mark.skipif(chromium() is None, reason='no Chromium on this machine (apt-get install chromium)')
def test_vr_page_drives_robot_through_mux(test_node):
    """Headless Chromium runs the page's emulated controller: trigger pulled, controller moved 6 cm
    forward -> VR node (FK/IK) -> mux -> robot command; the tool moves ~6 cm along robot +x."""
    kinematics = pytest.importorskip('hiors_sim.kinematics', reason='hiors_sim.kinematics not available')
    import os
    from hiors_common.testing import NodeProcess, spin_until
    from .test_mux_node import Harness
    kin = kinematics.ArmKinematics()
    mux = NodeProcess('hiors_teleop.command_mux_node', ros_args=[
        '-p', 'watchdog_timeout_s:=0.3', '-p', 'blend_time_s:=0.1', '-p', 'rate_hz:=20.0'],
        log_path=f'/tmp/hiors-test-vr-mux-{os.getpid()}.log').start()
    vr = NodeProcess('hiors_teleop.vr_teleop_node', ros_args=['-p', 'port:=0']).start()
    browser = None
    try:
        h = Harness(test_node)
        h.q = list(SIM_HOME)
        h.policy = list(SIM_HOME)
        assert h.wait_source('policy', timeout=25, settle_to=SIM_HOME), mux.log()
        url = _vr_url(vr, test_node)
        browser = start_chromium(url + '?script=1&dz=-0.06&seconds=0.8&hold=1.5&wait=1.0&label=success')
        assert h.wait_source('human', timeout=30), vr.log()
        p0 = kin.fk(SIM_HOME[:6])[0]
        moved = {}

        def far_enough():
            _, src, pos = h.last_exec()
            moved['d'] = kin.fk(np.asarray(pos[:6]))[0] - p0
            return src == 'human' and moved['d'][0] > 0.05
        assert spin_until(test_node, far_enough, 10), (moved, vr.log()[-2000:])
        assert abs(moved['d'][1]) < 0.01 and abs(moved['d'][2]) < 0.01, moved
        assert spin_until(test_node, lambda: 'success' in h.events, 15), vr.log()[-2000:]
        assert h.wait_source('policy', timeout=10), mux.log()
        assert 'HeadlessChrome' in vr.log()
    finally:
        if browser is not None:
            stop_chromium(*browser)
        assert vr.stop() == 0, vr.log()
        assert mux.stop() == 0, mux.log()
