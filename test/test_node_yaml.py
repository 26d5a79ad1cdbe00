"""Every node's shipped YAML matches its config dataclass: the top-level key is the node's name,
no unknown parameter, every value of the declared type (the dataclass holds the defaults and the
docs; a YAML holds deliberate overrides only)."""
import dataclasses
import glob
import importlib
import os
import typing

import pytest
import yaml

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


@pytest.mark.parametrize('fname', sorted(NODES))
def test_yaml_matches_config(fname):
    node, module, cls_name = NODES[fname]
    package, name = fname.split('/')
    with open(os.path.join(SRC, package, 'config', name)) as f:
        data = yaml.safe_load(f)
    assert list(data) == [node], f'{fname}: top-level key must be the node name {node!r}'
    params = data[node]['ros__parameters'] or {}
    cls = getattr(importlib.import_module(module), cls_name)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert not set(params) - fields, f'{fname}: unknown parameters {set(params) - fields}'
    for k, v in params.items():
        assert _ok(v, hints[k]), f'{fname}: {k}={v!r} is not {hints[k]}'


def test_the_graph_names_the_same_config_classes():
    from hiors.graph import NODE_CONFIGS
    listed = {node: f'{module}:{cls}' for node, module, cls in NODES.values()}
    assert listed == {node: config for node, (_, config) in NODE_CONFIGS.items()}
