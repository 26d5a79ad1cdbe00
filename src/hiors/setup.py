import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'hiors'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    package_data={'hiors': ['web/*']},   # the dashboard page
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*')),
        (os.path.join('share', PACKAGE, 'models'), glob('models/*')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='hiors developers',
    maintainer_email='dev@hiors.invalid',
    description=open('package.xml').read().split('<description>')[1].split('</description>')[0],
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'hiors = hiors.cli:main',
            'dashboard_node = hiors.dashboard_node:main',
        ],
    },
)
