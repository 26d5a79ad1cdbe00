"""Every YAML default file matches its node's config dataclass (names and types), and setup.py's
entry points name real modules with a main() (the bringup graph starts them by name)."""
import dataclasses
import importlib
import os
import re
import typing

import pytest
import yaml

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = {
    'command_mux.yaml': ('command_mux', 'hiors_teleop.mux', 'MuxConfig'),
    'joy_teleop.yaml': ('joy_teleop', 'hiors_teleop.joy_teleop_node', 'JoyTeleopConfig'),
    'keyboard_teleop.yaml': ('keyboard_teleop', 'hiors_teleop.keyboard_teleop_node', 'KeyboardTeleopConfig'),
    'evdev_teleop.yaml': ('evdev_teleop', 'hiors_teleop.evdev_teleop_node', 'EvdevTeleopConfig'),
    'spacemouse_teleop.yaml': ('spacemouse_teleop', 'hiors_teleop.spacemouse_teleop_node', 'SpaceMouseTeleopConfig'),
    'vr_teleop.yaml': ('vr_teleop', 'hiors_teleop.vr_teleop_node', 'VRTeleopConfig'),
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


@pytest.mark.parametrize('fname', sorted(NODES))
def test_yaml_matches_config(fname):
    node, module, cls_name = NODES[fname]
    with open(os.path.join(PKG, 'config', fname)) as f:
        data = yaml.safe_load(f)
    assert list(data) == [node], f'{fname}: top-level key must be the node name {node!r}'
    params = data[node]['ros__parameters']
    cls = getattr(importlib.import_module(module), cls_name)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    assert not set(params) - fields, f'{fname}: unknown parameters {set(params) - fields}'
    for k, v in params.items():
        assert _ok(v, hints[k]), f'{fname}: {k}={v!r} is not {hints[k]}'


def test_config_files_listed_and_entry_points_importable():
    assert sorted(os.listdir(os.path.join(PKG, 'config'))) == sorted(NODES)
    with open(os.path.join(PKG, 'setup.py')) as f:
        setup = f.read()
    entries = re.findall(r"'(\w+) = (hiors_teleop\.\w+):main'", setup)
    assert {e for e, _ in entries} == {'command_mux_node', 'joy_teleop_node', 'keyboard_teleop_node',
                                       'evdev_teleop_node', 'spacemouse_teleop_node', 'vr_teleop_node'}
    for exe, module in entries:
        assert module.endswith(exe)
        assert callable(importlib.import_module(module).main)
