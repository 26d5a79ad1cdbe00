import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'hiors_teleop'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={PACKAGE: ['web/*.html']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*.yaml')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='hiors developers',
    maintainer_email='dev@hiors.invalid',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'command_mux_node = hiors_teleop.command_mux_node:main',
            'joy_teleop_node = hiors_teleop.joy_teleop_node:main',
            'keyboard_teleop_node = hiors_teleop.keyboard_teleop_node:main',
            'evdev_teleop_node = hiors_teleop.evdev_teleop_node:main',
            'spacemouse_teleop_node = hiors_teleop.spacemouse_teleop_node:main',
            'vr_teleop_node = hiors_teleop.vr_teleop_node:main',
        ],
    },
)
