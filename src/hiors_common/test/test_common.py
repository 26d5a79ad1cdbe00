import dataclasses
import os

import pytest

from hiors_common import signing
from hiors_common.params import declare_config
from hiors_common.ros_env import domain_id_for, use_local_ros_network


def test_local_network_env_is_forced_and_domain_kept():
    env = {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET', 'ROS_STATIC_PEERS': '10.0.0.5'}
    use_local_ros_network(env=env)
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert 'ROS_STATIC_PEERS' not in env
    assert 1 <= int(env['ROS_DOMAIN_ID']) <= 101
    env2 = {'ROS_DOMAIN_ID': '7'}
    assert use_local_ros_network(env=env2)['ROS_DOMAIN_ID'] == '7'
    assert use_local_ros_network(domain_id=9, env=env2)['ROS_DOMAIN_ID'] == '9'
    assert {domain_id_for(k) for k in range(500)} <= set(range(1, 102))


def test_this_test_process_is_local_only():
    assert os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert os.environ['ROS_DOMAIN_ID']


def test_manifest_signature_detects_tampering(tmp_path):
    key = b'secret'
    data = b'weights'
    m = {'version': '3', 'sha256': signing.sha256_bytes(data), 'size': len(data),
         'format': 'hiors-safetensors-v1'}
    m['signature'] = signing.sign_manifest(m, key)
    assert signing.verify_manifest(m, key)
    assert not signing.verify_manifest(m, b'other key')
    assert not signing.verify_manifest(dict(m, version='4'), key)
    assert not signing.verify_manifest({k: v for k, v in m.items() if k != 'signature'}, key)
    f = tmp_path / 'w.bin'
    f.write_bytes(data)
    assert signing.sha256_file(str(f)) == m['sha256']


def test_load_key_sources(tmp_path):
    with pytest.raises(signing.SigningKeyMissing):
        signing.load_key(env={})
    k = tmp_path / 'key'
    k.write_text('abc\n')
    assert signing.load_key(env={'HIORS_CHECKPOINT_KEY_FILE': str(k)}) == b'abc'
    assert signing.load_key(env={'HIORS_CHECKPOINT_KEY': 'xyz'}) == b'xyz'
    (tmp_path / 'empty').write_text('')
    with pytest.raises(signing.SigningKeyMissing):
        signing.load_key(str(tmp_path / 'empty'), env={})


@dataclasses.dataclass
class _Cfg:
    rate_hz: float = 10.0
    name: str = 'x'
    joints: list[str] = dataclasses.field(default_factory=lambda: ['a', 'b'])
    limits: list[float] = dataclasses.field(default_factory=list)
    enabled: bool = True


def test_declare_config_reads_overrides(rclpy_context):
    import rclpy
    from rclpy.parameter import Parameter
    node = rclpy.create_node('cfg_test', parameter_overrides=[
        Parameter('rate_hz', Parameter.Type.INTEGER, 20), Parameter('joints', value=['q1']),
        Parameter('limits', value=[1.0, 2.0])])
    try:
        cfg = declare_config(node, _Cfg)
        assert cfg == _Cfg(rate_hz=20.0, name='x', joints=['q1'], limits=[1.0, 2.0], enabled=True)
        assert isinstance(cfg.rate_hz, float)
    finally:
        node.destroy_node()


def test_declare_config_empty_list_from_yaml(rclpy_context, tmp_path):
    import rclpy
    (tmp_path / 'p.yaml').write_text('cfg_yaml:\n  ros__parameters:\n    limits: []\n    rate_hz: 5\n')
    ctx_args = ['--ros-args', '--params-file', str(tmp_path / 'p.yaml')]
    node = rclpy.create_node('cfg_yaml', cli_args=ctx_args)
    try:
        cfg = declare_config(node, _Cfg)
        assert cfg.limits == [] and cfg.rate_hz == 5.0
    finally:
        node.destroy_node()


@pytest.mark.parametrize('text,expected', [('3e-4', 3e-4), ('abc', None), ('nan', None)])
def test_float_parameter_given_as_exponent_text(rclpy_context, text, expected):
    import rclpy
    # `-p rate_hz:=3e-4` reaches the node as a string (no dot): accepted when it is a number.
    node = rclpy.create_node('cfg_exp', cli_args=['--ros-args', '-p', f'rate_hz:={text}'])
    try:
        if expected is None:
            with pytest.raises(TypeError, match='must be a number'):
                declare_config(node, _Cfg)
        else:
            assert declare_config(node, _Cfg).rate_hz == pytest.approx(expected)
    finally:
        node.destroy_node()


def test_sticky_status_holds_the_worst_level_and_the_last_error():
    from hiors_common.diagnostics import ERROR, OK, WARN, StickyStatus
    s = StickyStatus(hold_s=10.0)
    assert s.update(OK, 'running', 0.0, 1000.0) == (OK, 'running', {})
    level, message, extra = s.update(ERROR, 'checkpoint rejected: bad signature', 1.0, 1001.0)
    assert level == ERROR and extra['last_error'] == 'checkpoint rejected: bad signature'
    level, message, extra = s.update(OK, 'running', 9.0, 1009.0)   # within the hold: still ERROR
    assert level == ERROR and 'held ERROR 8 s ago: checkpoint rejected' in message
    assert extra['last_error_level'] == 'ERROR' and extra['last_error_age_s'] == '8.0'
    level, message, extra = s.update(WARN, 'slow', 10.0, 1010.0)
    assert level == ERROR and extra['last_error'].startswith('checkpoint rejected'), 'a WARN replaces nothing'
    level, message, extra = s.update(OK, 'running', 11.5, 1011.5)  # ERROR expired; the WARN is 1.5 s old
    assert level == WARN and 'held WARN' in message
    level, message, extra = s.update(OK, 'running', 21.0, 1021.0)
    assert (level, message) == (OK, 'running') and extra['last_error_age_s'] == '20.0', 'the last error stays listed'
    assert s.update(b'\x02', 'bytes level', 22.0, 1022.0)[0] == ERROR


def test_topic_names_are_documented_and_need_no_ros():
    import subprocess
    import sys
    from hiors_common import topics
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with open(os.path.join(root, 'docs', 'INTERFACES.md')) as f:
        doc = f.read()
    names = {k: v for k, v in vars(topics).items() if k.isupper() and isinstance(v, str)}
    assert set(names) <= set(topics.__all__)
    names['CAMERA_TOPIC_FORMAT'] = topics.camera_topic('front')
    missing = {k: v for k, v in names.items() if f'| {v}' not in doc and f'{v}/' not in doc}
    assert not missing, f'docs/INTERFACES.md does not list {missing}'
    out = subprocess.run([sys.executable, '-c', "import sys, hiors_common.topics; print('rclpy' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == 'False', out


def test_qos_profiles():
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from hiors_common.topics import best_effort_qos, event_qos, latched_qos, reliable_qos
    latched = latched_qos()
    assert (latched.depth, latched.reliability, latched.durability) == (
        1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
    assert event_qos() == QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    assert event_qos().durability == DurabilityPolicy.VOLATILE
    assert reliable_qos(5) == QoSProfile(depth=5) and reliable_qos().depth == 10
    assert best_effort_qos(3).reliability == ReliabilityPolicy.BEST_EFFORT
    assert latched_qos() is not latched, 'a new profile every call (callers may change theirs)'


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    from hiors_common.atomic import atomic_path, atomic_write_json, atomic_write_text
    target = tmp_path / 'out.bin'
    atomic_write_text(target, 'old')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, 'w') as f:
                f.write('half')
            raise RuntimeError('writer died')
    assert target.read_text() == 'old'            # the target is untouched on an error
    with atomic_path(target) as tmp:              # a writer that wants a path (save_file, parquet)
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith('.tmp')
        with open(tmp, 'w') as f:
            f.write('new')
    assert target.read_text() == 'new'
    atomic_write_json(tmp_path / 'a.json', {'b': 1, 'a': 2})
    assert (tmp_path / 'a.json').read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask   # like open(path, 'w'), not mkstemp's 0600
    atomic_write_text(tmp_path / 'key', 'k', mode=0o600)
    assert (tmp_path / 'key').stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ['a.json', 'key', 'out.bin']


@dataclasses.dataclass
class _DocBase:
    rate_hz: float = dataclasses.field(default=10.0, metadata={'doc': 'from metadata'})
    # the comment block right above
    # a field documents it
    depth: int = 3
    name: str = 'x'          # a trailing comment
    bare: bool = True


@dataclasses.dataclass
class _DocChild(_DocBase):
    rate_hz: float = 20.0    # re-declared: its own comment wins
    depth: int = 4
    extra: str = ''


def test_field_docs_from_metadata_else_source_comments():
    from hiors_common.params import field_docs
    assert field_docs(_DocBase) == {'rate_hz': 'from metadata',
                                    'depth': 'the comment block right above a field documents it',
                                    'name': 'a trailing comment', 'bare': ''}
    child = field_docs(_DocChild)
    assert child['rate_hz'] == 're-declared: its own comment wins'
    assert child['depth'] == 'the comment block right above a field documents it'   # inherited doc
    assert child['name'] == 'a trailing comment' and child['extra'] == ''
