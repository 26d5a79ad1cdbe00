"""Every node's shipped YAML matches its config dataclass: the top-level key is the node's name,
its `ros__parameters` a mapping (`{}` when nothing is overridden), no unknown parameter, every value
of the declared type and none equal to its default (the dataclass holds the defaults and the docs; a
YAML holds deliberate overrides only), and rcl's own parser reads the file into those values."""
import dataclasses
import glob
import importlib
import os
import typing

import pytest
import yaml

from hiors_common.params import field_default

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'src')
# YAML (package/config/<file>) -> (node name, module, config class)
NODES = {
    'hiors/dashboard.yaml': ('dashboard', 'hiors.dashboard_node', 'DashboardConfig'),
    'hiors_policy/policy.yaml': ('policy', 'hiors_policy.policy_node', 'PolicyNodeConfig'),
    'hiors_recorder/recorder.yaml': ('recorder', 'hiors_recorder.recorder', 'RecorderConfig'),
    'hiors_sim/sim.yaml': ('sim', 'hiors_sim.sim_node', 'SimNodeConfig'),
    'hiors_sim/sim_human.yaml': ('sim_human', 'hiors_sim.sim_human_node', 'SimHumanNodeConfig'),
    'hiors_trainer/trainer.yaml': ('trainer', 'hiors_trainer.trainer_node', 'TrainerNodeConfig'),
    'hiors_teleop/command_mux.yaml': ('command_mux', 'hiors_teleop.mux', 'MuxConfig'),
    'hiors_teleop/joy_teleop.yaml': ('joy_teleop', 'hiors_teleop.joy_teleop_node', 'JoyTeleopConfig'),
    'hiors_teleop/keyboard_teleop.yaml': ('keyboard_teleop', 'hiors_teleop.keyboard_teleop_node',
                                          'KeyboardTeleopConfig'),
    'hiors_teleop/evdev_teleop.yaml': ('evdev_teleop', 'hiors_teleop.evdev_teleop_node', 'EvdevTeleopConfig'),
    'hiors_teleop/spacemouse_teleop.yaml': ('spacemouse_teleop', 'hiors_teleop.spacemouse_teleop_node',
                                            'SpaceMouseTeleopConfig'),
    'hiors_teleop/vr_teleop.yaml': ('vr_teleop', 'hiors_teleop.vr_teleop_node', 'VRTeleopConfig'),
}


def _ok(value, hint):
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_ok(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def test_every_node_yaml_is_listed():
    shipped = {os.path.relpath(p, SRC).replace('/config/', '/')
               for p in glob.glob(os.path.join(SRC, '*', 'config', '*.yaml'))}
    assert shipped == set(NODES)


def _path(fname):
    package, name = fname.split('/')
    return os.path.join(SRC, package, 'config', name)


def _overrides(fname):
    node = NODES[fname][0]
    with open(_path(fname)) as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict) and list(data) == [node], f'{fname}: top-level key must be the node name {node!r}'
    assert isinstance(data[node], dict) and list(data[node]) == ['ros__parameters'], \
        f'{fname}: {node} must hold ros__parameters only'
    params = data[node]['ros__parameters']
    # rcl fails on `ros__parameters:` without a value ("Cannot have a value before ros__parameters")
    assert isinstance(params, dict), f'{fname}: ros__parameters must be a mapping ({{}} for none), not {params!r}'
    return params


def _config_class(fname):
    _, module, cls_name = NODES[fname]
    return getattr(importlib.import_module(module), cls_name)


@pytest.mark.parametrize('fname', sorted(NODES))
def test_yaml_matches_config(fname):
    params = _overrides(fname)
    cls = _config_class(fname)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert not set(params) - set(fields), f'{fname}: unknown parameters {set(params) - set(fields)}'
    for k, v in params.items():
        assert _ok(v, hints[k]), f'{fname}: {k}={v!r} is not {hints[k]}'
        default = field_default(fields[k])
        assert not _same(v, default), (f'{fname}: {k}: {v!r} restates the default of {cls.__name__}.{k}; '
                                       f'remove it (the YAML holds deliberate overrides only)')


def _same(value, default) -> bool:
    """The YAML value is the default as the parameter server would see it (tuple = list, 3 = 3.0)."""
    if isinstance(default, (list, tuple)):
        return isinstance(value, list) and len(value) == len(default) and all(map(_same, value, default))
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return value == default


def test_a_restated_default_is_caught():
    cls = _config_class('hiors_sim/sim.yaml')
    defaults = {f.name: field_default(f) for f in dataclasses.fields(cls)}
    assert _same(10, defaults['control_rate_hz']) and _same(['front', 'wrist'], defaults['cameras'])
    assert not _same(20.0, defaults['control_rate_hz']) and not _same(1, defaults['render'])
    assert not _same(['front'], defaults['cameras'])


@pytest.mark.parametrize('fname', sorted(NODES))
def test_rcl_reads_the_yaml_into_the_config(rclpy_context, fname):
    """The file as both start paths pass it (`--ros-args --params-file`: the pip runner's
    node_command and ros2 launch): rcl parses it (also an empty map) and the node gets every
    default, with the file's overrides on top."""
    import rclpy
    from hiors_common.params import declare_config
    node_name = NODES[fname][0]
    cls = _config_class(fname)
    node = rclpy.create_node(node_name, cli_args=['--ros-args', '--params-file', _path(fname)])
    try:
        cfg = declare_config(node, cls)
    finally:
        node.destroy_node()
    expected = {f.name: field_default(f) for f in dataclasses.fields(cls)}
    expected.update(_overrides(fname))
    for k, v in expected.items():
        assert _same(getattr(cfg, k), v) or getattr(cfg, k) == v, (fname, k, getattr(cfg, k), v)


def test_the_graph_names_the_same_config_classes():
    from hiors.graph import NODE_CONFIGS
    listed = {node: f'{module}:{cls}' for node, module, cls in NODES.values()}
    assert listed == {node: config for node, (_, config) in NODE_CONFIGS.items()}


def test_an_empty_map_starts_with_the_defaults(rclpy_context, tmp_path):
    """`ros__parameters: {}` (a YAML with no override) is valid for rcl; a bare `ros__parameters:`
    is not, and _overrides rejects it."""
    import rclpy
    from hiors.dashboard_node import DashboardConfig
    from hiors_common.params import declare_config
    empty = tmp_path / 'empty.yaml'
    empty.write_text('# no overrides\ndashboard:\n  ros__parameters: {}\n')
    node = rclpy.create_node('dashboard', cli_args=['--ros-args', '--params-file', str(empty)])
    try:
        assert declare_config(node, DashboardConfig) == DashboardConfig()
    finally:
        node.destroy_node()
    bare = tmp_path / 'bare.yaml'
    bare.write_text('dashboard:\n  ros__parameters:\n')
    with pytest.raises(Exception, match='ros__parameters'):
        rclpy.create_node('dashboard', cli_args=['--ros-args', '--params-file', str(bare)])
