"""Process supervision of the pip-only runner: restart policies, required nodes, clean stop."""
import importlib.util
import os
import sys
import time
import types

import pytest

from hiors.graph import (ARGUMENTS, DEVICE_NODES, RESTART, RESTART_LIMIT, RESTART_POLICIES, NodeSpec, bringup_graph,
                         resolve_arguments, should_restart)
from hiors.supervisor import Supervisor, node_command
from hiors_common.topics import ROBOT_COMMAND

WORKER = '''
import os, signal, sys, time
mode = os.environ.get("WORKER_MODE_" + sys.argv[sys.argv.index("-r") + 1].split(":=")[1], "sleep")
marker = os.environ["WORKER_DIR"] + "/" + sys.argv[sys.argv.index("-r") + 1].split(":=")[1]
with open(marker, "a") as f:
    f.write("start\\n")
if mode == "crash":
    time.sleep(0.2); sys.exit(3)
if mode == "finish":
    time.sleep(0.5); sys.exit(0)
if mode == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
def stop(*_):
    with open(marker, "a") as f:
        f.write("clean-stop\\n")
    sys.exit(0)
if mode != "stubborn":
    signal.signal(signal.SIGINT, stop)
while True:
    time.sleep(0.05)
'''


@pytest.fixture
def worker(tmp_path):
    (tmp_path / 'fake_worker.py').write_text(WORKER)
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}:{os.environ.get("PYTHONPATH", "")}',
               WORKER_DIR=str(tmp_path))
    return tmp_path, env


def _starts(tmp_path, name):
    path = tmp_path / name
    return path.read_text().count('start\n') if path.exists() else 0


def test_restart_policies_and_clean_stop(worker):
    tmp_path, env = worker
    env.update(WORKER_MODE_a='crash', WORKER_MODE_b='crash', WORKER_MODE_c='sleep', WORKER_MODE_d='finish')
    specs = [NodeSpec('a', 'x', 'x', 'fake_worker', restart='on-failure'),
             NodeSpec('b', 'x', 'x', 'fake_worker', restart='never'),
             NodeSpec('c', 'x', 'x', 'fake_worker', restart='always'),
             NodeSpec('d', 'x', 'x', 'fake_worker', restart='on-failure')]
    sup = Supervisor(specs, str(tmp_path / 'logs'), env=env, max_restarts=2, echo=lambda m: None)
    code = sup.start().run(duration=6.0)
    assert _starts(tmp_path, 'a') == 3          # first run + 2 restarts
    assert _starts(tmp_path, 'b') == 1          # never restarted
    assert _starts(tmp_path, 'd') == 1          # on-failure: a clean exit 0 stays down, not a failure
    assert 'clean-stop' in (tmp_path / 'c').read_text()   # SIGINT reached it at shutdown
    assert code == 1 and set(sup.failed) == {'a', 'b'}
    assert (tmp_path / 'logs' / 'a.log').read_text().count('=== exit 3') == 3


def test_required_node_ends_the_graph_and_stubborn_nodes_are_killed(worker):
    tmp_path, env = worker
    env.update(WORKER_MODE_done='finish', WORKER_MODE_stuck='stubborn')
    specs = [NodeSpec('done', 'x', 'x', 'fake_worker', required=True),
             NodeSpec('stuck', 'x', 'x', 'fake_worker', restart='always', stop_timeout_s=1.0)]
    sup = Supervisor(specs, str(tmp_path / 'logs'), env=env, echo=lambda m: None)
    t0 = time.monotonic()
    sup.start()
    code = sup.run(duration=30.0)
    assert code == 0
    assert time.monotonic() - t0 < 25            # ended by the required node, not the duration
    assert sup.exit_codes['done'] == 0 and sup.exit_codes['stuck'] != 0   # SIGKILLed


def test_children_get_local_ros_network(worker):
    tmp_path, env = worker
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SUBNET'
    sup = Supervisor([], str(tmp_path / 'logs'), env=env)
    assert sup.env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert sup.env['ROS_DOMAIN_ID']


def test_graph_arguments_and_node_commands():
    specs = bringup_graph({'teleop': 'sim_human', 'num_episodes': '3', 'checkpoint': '/x.safetensors'})
    names = [s.name for s in specs]
    assert names[:2] == ['sim', 'command_mux'] and 'policy' in names and 'sim_human' in names
    human = next(s for s in specs if s.name == 'sim_human')
    assert human.required and human.parameters['num_episodes'] == 3
    policy = next(s for s in specs if s.name == 'policy')
    cmd = node_command(policy)
    assert cmd[1:3] == ['-m', 'hiors_policy.policy_node']
    assert "checkpoint:='/x.safetensors'" in cmd and '__node:=policy' in cmd
    real = bringup_graph({'robot': 'real', 'teleop': 'joy', 'command_topic': '/arm/cmd', 'trainer': 'false'})
    assert 'sim' not in [s.name for s in real]
    # teleop:=joy: the pip runner has no ROS joy driver and reads the pad through evdev; ros2 launch
    # starts the driver and the Joy teleop node
    assert [(s.name, s.module) for s in real if s.name.startswith(('joy', 'evdev'))] == [
        ('evdev_teleop', 'hiors_teleop.evdev_teleop_node')]     # the name its YAML is keyed by
    ros = bringup_graph({'robot': 'real', 'teleop': 'joy', 'trainer': 'false'}, ros_drivers=True)
    drivers = {s.name: s for s in ros if s.name.startswith('joy')}
    assert set(drivers) == {'joy', 'joy_teleop'}
    assert (drivers['joy'].package, drivers['joy'].executable) == ('joy', 'joy_node')
    assert drivers['joy'].parameters['autorepeat_rate'] > 0
    mux = next(s for s in real if s.name == 'command_mux')
    assert (ROBOT_COMMAND, '/arm/cmd') in mux.remappings
    with pytest.raises(KeyError):
        resolve_arguments({'nope': '1'})
    tuned = bringup_graph({'trainer': 'true', 'trainer.checkpoint_every_steps': '20', 'sim.render': 'false'})
    assert next(s for s in tuned if s.name == 'trainer').parameters['checkpoint_every_steps'] == 20
    assert next(s for s in tuned if s.name == 'sim').parameters['render'] is False
    with pytest.raises(KeyError):
        bringup_graph({'robot': 'real', 'teleop': 'joy', 'sim.render': 'false'})
    with pytest.raises(ValueError):
        bringup_graph({'robot': 'real', 'teleop': 'sim_human'})
    assert set(resolve_arguments()) == set(ARGUMENTS)


def test_launch_file_reads_the_same_graph():
    import ast
    path = os.path.join(os.path.dirname(__file__), '..', 'launch', 'bringup.launch.py')
    tree = ast.parse(open(path).read())
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert 'bringup_graph' in calls and 'generate_launch_description' in {
        n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_restart_policy_table_covers_every_node():
    assert set(RESTART.values()) <= set(RESTART_POLICIES)
    graphs = [bringup_graph({'teleop': 'sim_human,' + ','.join(DEVICE_NODES), 'num_episodes': '0'}, ros_drivers=d)
              for d in (False, True)]
    for spec in (s for g in graphs for s in g):
        assert spec.name in RESTART and spec.restart == RESTART[spec.name], spec.name
    assert should_restart('always', 0) and should_restart('always', 1)
    assert not should_restart('on-failure', 0)
    assert should_restart('on-failure', 1) and should_restart('on-failure', -9)   # -9: killed by a signal
    assert not should_restart('never', 1)
    with pytest.raises(ValueError):
        NodeSpec('x', 'x', 'x', 'x', restart='on_failure')


class _Action:
    """Stands in for a launch action / substitution: records its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def perform(self, context):           # LaunchConfiguration(name).perform(context)
        return context.values[self.args[0]]


def _load_launch_file(monkeypatch):
    """bringup.launch.py with `launch`, `launch_ros` and `ament_index_python` replaced by recording
    stubs (none of them is installable from PyPI)."""
    stubs = {'launch': ['LaunchDescription'],
             'launch.actions': ['DeclareLaunchArgument', 'OpaqueFunction', 'Shutdown', 'TimerAction'],
             'launch.substitutions': ['LaunchConfiguration'], 'launch_ros': [], 'launch_ros.actions': ['Node'],
             'ament_index_python': [], 'ament_index_python.packages': []}
    for name, classes in stubs.items():
        module = types.ModuleType(name)
        for cls in classes:
            setattr(module, cls, type(cls, (_Action,), {}))
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules['ament_index_python.packages'].get_package_share_directory = lambda pkg: f'/share/{pkg}'
    path = os.path.join(os.path.dirname(__file__), '..', 'launch', 'bringup.launch.py')
    spec = importlib.util.spec_from_file_location('hiors_bringup_launch_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, 'use_local_ros_network', lambda: None)
    return module


def test_launch_file_restarts_follow_the_graph_table(monkeypatch):
    launch_file = _load_launch_file(monkeypatch)
    values = {**resolve_arguments(), 'teleop': 'sim_human,joy,keyboard', 'num_episodes': '0'}
    context = types.SimpleNamespace(values=values, is_shutdown=False)
    nodes = {a.kwargs['name']: a for a in launch_file._nodes(context)}
    specs = {s.name: s for s in bringup_graph(values, ros_drivers=True)}
    assert set(nodes) == set(specs) and {'dashboard', 'joy', 'sim_human'} <= set(nodes)
    for name, node in nodes.items():
        assert node.kwargs['respawn'] is False, name      # launch's respawn also restarts after exit 0
        for code in (0, 1, -2, -9):
            actions = node.kwargs['on_exit'](types.SimpleNamespace(returncode=code), context)
            assert bool(actions) == should_restart(RESTART[name], code), (name, code)
            if actions:                                   # a fresh copy of the node, after a delay
                (timer,) = actions
                assert type(timer).__name__ == 'TimerAction'
                (again,) = timer.kwargs['actions']
                assert again.kwargs['name'] == name and again.kwargs['parameters'] == node.kwargs['parameters']
    assert nodes['dashboard'].kwargs['on_exit'](types.SimpleNamespace(returncode=0), context) is None
    # no restarts while launch is stopping (Ctrl-C makes nodes exit non-zero)
    stopping = types.SimpleNamespace(values=values, is_shutdown=True)
    assert nodes['sim'].kwargs['on_exit'](types.SimpleNamespace(returncode=-2), stopping) is None
    # the restart limit is the pip runner's
    node = nodes['sim']
    for _ in range(RESTART_LIMIT):
        (timer,) = node.kwargs['on_exit'](types.SimpleNamespace(returncode=1), context)
        (node,) = timer.kwargs['actions']
    assert node.kwargs['on_exit'](types.SimpleNamespace(returncode=1), context) is None
    # a required node's exit (any code) shuts the launch down, as in the pip runner
    context.values = {**values, 'teleop': 'sim_human', 'num_episodes': '3'}
    human = next(a for a in launch_file._nodes(context) if a.kwargs['name'] == 'sim_human')
    (shutdown,) = human.kwargs['on_exit'](types.SimpleNamespace(returncode=0), context)
    assert type(shutdown).__name__ == 'Shutdown'


def test_hiors_args_prints_every_node_parameter_with_default_and_doc(capsys):
    import dataclasses

    from hiors.cli import main
    from hiors.graph import NODE_CONFIGS, node_config_class
    from hiors_common.params import field_default, field_docs
    graphs = [bringup_graph({'teleop': 'sim_human,' + ','.join(DEVICE_NODES)}, ros_drivers=d) for d in (False, True)]
    modules = {module for module, _ in NODE_CONFIGS.values()}
    assert {s.module for g in graphs for s in g if s.module} == modules   # every node the graph runs has its config
    assert main(['args']) == 0
    out = capsys.readouterr().out
    for name in ARGUMENTS:
        assert f'\n  {name} ' in out
    sections = {block.split('  (', 1)[0]: block for block in out.split('\n\n')}
    for node in NODE_CONFIGS:
        cls = node_config_class(node)
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert f'\n  {f.name}: ' in sections[node] and f' = {field_default(f)!r}' in sections[node], (node, f.name)
            first_words = ' '.join(docs[f.name].split()[:4])
            assert first_words in ' '.join(sections[node].split()), (node, f.name)
    assert 'diagnostics_hold_s: float = 10.0' in out
    # docs come from field(metadata={'doc': ...}), else from the field's source comment
    assert 'root of the episode directories' in sections['recorder']
    assert "autonomous samples every k steps; 0 = the policy's n_action_steps" in sections['trainer']
    assert main(['args', 'trainer']) == 0
    one = capsys.readouterr().out
    assert one.lstrip().startswith('trainer  (') and 'rate_hz: float = 0.0   [bringup: 10.0]' in one
    assert 'recorder  (' not in one
    assert main(['args', 'nope']) == 2


def test_every_node_parameter_has_a_doc():
    # Every field of every node config is documented where it is declared (metadata['doc'] or its
    # source comment): `hiors args` and `ros2 param describe` print that text.
    import dataclasses

    from hiors.graph import NODE_CONFIGS, node_config_class
    from hiors_common.params import field_docs
    undocumented = []
    for node in NODE_CONFIGS:
        cls = node_config_class(node)
        docs = field_docs(cls)
        undocumented += [f'{node}.{f.name} ({cls.__name__})' for f in dataclasses.fields(cls)
                         if not docs[f.name].strip()]
    assert not undocumented, 'node parameters without a doc: ' + ', '.join(undocumented)
