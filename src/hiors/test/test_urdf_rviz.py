import os

import yaml

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
    assert {'/camera/front/image_raw', '/camera/wrist/image_raw', '/hiors/policy/action_chunk'} <= topics
