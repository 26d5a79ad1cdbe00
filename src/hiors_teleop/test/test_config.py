"""setup.py's entry points name real modules with a main() (the bringup graph starts them by name);
the YAML files are checked against their dataclasses with every other node's (test/test_node_yaml.py)."""
import importlib
import os
import re

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_entry_points_importable():
    with open(os.path.join(PKG, 'setup.py')) as f:
        setup = f.read()
    entries = re.findall(r"'(\w+) = (hiors_teleop\.\w+):main'", setup)
    assert {e for e, _ in entries} == {'command_mux_node', 'joy_teleop_node', 'keyboard_teleop_node',
                                       'evdev_teleop_node', 'spacemouse_teleop_node', 'vr_teleop_node'}
    for exe, module in entries:
        assert module.endswith(exe)
        assert callable(importlib.import_module(module).main)
