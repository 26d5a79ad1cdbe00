"""setup.py's entry points name real modules with a main() (the bringup graph starts them by name);
the YAML files are checked against their dataclasses with every other node's (test/test_node_yaml.py)."""
import importlib
import os
import re

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODES = {
    'command_mux.yaml': ('command_mux', 'hiors_teleop.mux', 'MuxConfig'),
    'joy_teleop.yaml': ('joy_teleop', 'hiors_teleop.joy_teleop_node', 'JoyTeleopConfig'),
    'keyboard_teleop.yaml': ('keyboard_teleop', 'hiors_teleop.keyboard_teleop_node', 'KeyboardTeleopConfig'),
    'evdev_teleop.yaml': ('evdev_teleop', 'hiors_teleop.evdev_teleop_node', 'EvdevTeleopConfig'),
    'spacemouse_teleop.yaml': ('spacemouse_teleop', 'hiors_teleop.spacemouse_teleop_node', 'SpaceMouseTeleopConfig'),
    'vr_teleop.yaml': ('vr_teleop', 'hiors_teleop.vr_teleop_node', 'VRTeleopConfig'),
}


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
