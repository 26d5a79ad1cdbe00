import os

import yaml

from hiors_common.topics import ACTION_CHUNK_MARKERS, camera_topic

CFG = os.path.join(os.path.dirname(__file__), '..', 'config')


def test_rviz_config_has_required_displays():
    with open(os.path.join(CFG, 'hiors.rviz')) as f:
        cfg = yaml.safe_load(f)
    vm = cfg['Visualization Manager']
    assert vm['Global Options']['Fixed Frame'] == 'world'
    classes = {d['Class'] for d in vm['Displays']}
    assert {'rviz_default_plugins/RobotModel', 'rviz_default_plugins/TF',
            'rviz_default_plugins/MarkerArray', 'rviz_default_plugins/Image'} <= classes
    topics = {d['Topic']['Value'] for d in vm['Displays'] if 'Topic' in d}
    assert {camera_topic('front'), camera_topic('wrist'), ACTION_CHUNK_MARKERS} <= topics


def test_arm_urdf_parses_and_matches_sim():
    import xml.etree.ElementTree as ET

    import mujoco
    from hiors.urdf_from_mjcf import build_urdf
    from hiors_sim.scene import JOINT_NAMES, build_mjcf
    path = os.path.join(CFG, 'arm.urdf')
    robot = ET.parse(path).getroot()
    joints = [j for j in robot.findall('joint') if j.get('type') != 'fixed' and j.find('mimic') is None]
    assert tuple(j.get('name') for j in joints) == tuple(JOINT_NAMES)
    links = {link.get('name') for link in robot.findall('link')}
    for j in robot.findall('joint'):
        assert j.find('parent').get('link') in links and j.find('child').get('link') in links
    # committed file is up to date with the sim's MJCF
    with open(path) as f:
        assert f.read() == build_urdf(mujoco.MjModel.from_xml_string(build_mjcf())), \
            'regenerate: python -m hiors.urdf_from_mjcf'
