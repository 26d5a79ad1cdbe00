"""The workspace is a real colcon workspace: every package builds with colcon and installs its
executables where `ros2 run` looks (lib/<pkg>/) and its config/launch files in share/."""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ['hiors_common', 'hiors_sim', 'hiors_policy', 'hiors_teleop', 'hiors_recorder',
            'hiors_trainer', 'hiors']


def test_package_manifests_are_ament_python():
    for pkg in PACKAGES:
        root = ET.parse(os.path.join(ROOT, 'src', pkg, 'package.xml')).getroot()
        assert root.get('format') == '3'
        assert root.findtext('name') == pkg
        assert root.find('export/build_type').text == 'ament_python'
        assert os.path.isfile(os.path.join(ROOT, 'src', pkg, 'resource', pkg))


def test_colcon_build_installs_executables_and_share_files(tmp_path):
    colcon = os.path.join(os.path.dirname(sys.executable), 'colcon')
    if not os.path.exists(colcon):
        colcon = shutil.which('colcon')
    assert colcon, 'colcon is installed by scripts/setup.sh'
    shutil.copytree(os.path.join(ROOT, 'src'), tmp_path / 'src',
                    ignore=shutil.ignore_patterns('__pycache__', '*.egg-info', 'test'))
    shutil.copy(os.path.join(ROOT, 'colcon.meta'), tmp_path / 'colcon.meta')
    out = subprocess.run([colcon, 'build', '--event-handlers', 'console_direct-'], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    install = tmp_path / 'install'
    assert (install / 'hiors' / 'share' / 'hiors' / 'launch' / 'bringup.launch.py').is_file()
    for pkg, exe in [('hiors_sim', 'sim_node'), ('hiors_policy', 'policy_node'),
                     ('hiors_teleop', 'command_mux_node'), ('hiors_recorder', 'recorder_node'),
                     ('hiors_trainer', 'trainer_node')]:
        assert (install / pkg / 'lib' / pkg / exe).is_file(), f'{pkg}/{exe} not installed'
        assert (install / pkg / 'share' / pkg / 'package.xml').is_file()
