"""Over real DDS: the trainer node trains on recorded episodes and publishes a signed checkpoint
that the policy node (a separate process) verifies and swaps in (its /hiors/policy/version)."""
import json
import os
import time

from std_msgs.msg import String

from hiors_common.testing import NodeProcess, spin_until
from hiors_common.topics import CHECKPOINT, POLICY_VERSION, latched_qos
from hiors_recorder.synthetic import write_synthetic_episode

YAML = os.path.join(os.path.dirname(__file__), '..', 'config', 'trainer.yaml')


def test_policy_node_swaps_in_trainer_checkpoint(test_node, tmp_path):
    eps = tmp_path / 'eps'
    for i in range(2):
        write_synthetic_episode(str(eps), steps=20, outcome='success', seed=i, start_ns=int(1e18) + i * int(1e10))
    key = tmp_path / 'key'
    key.write_text('trainer-test-key')
    env = {'HIORS_CHECKPOINT_KEY_FILE': str(key), 'OMP_NUM_THREADS': '1'}
    latched = latched_qos()
    versions, manifests = [], []
    test_node.create_subscription(String, POLICY_VERSION, lambda m: versions.append(m.data), latched)
    test_node.create_subscription(String, CHECKPOINT, lambda m: manifests.append(m.data), latched)
    policy = NodeProcess('hiors_policy.policy_node', env=env, log_path=str(tmp_path / 'policy.log'))
    trainer = NodeProcess('hiors_trainer.trainer_node', env=env, log_path=str(tmp_path / 'trainer.log'),
                          ros_args=['--params-file', YAML, '-p', f'episode_dir:={eps}',
                                    '-p', f'out_dir:={tmp_path / "out"}',
                                    '-p', 'batch_size:=2', '-p', 'checkpoint_every_steps:=2',
                                    '-p', 'max_steps:=3', '-p', 'replan_stride:=4'])
    with policy, trainer:
        ok = spin_until(test_node, lambda: '000001' in versions and manifests, timeout=90)
        assert ok, f'versions {versions}\nTRAINER:\n{trainer.log()[-3000:]}\nPOLICY:\n{policy.log()[-3000:]}'
        assert manifests and '"signature"' in manifests[-1]
        assert trainer.alive() and policy.alive()
        time.sleep(2.0)                      # step 3 runs, then the loop ends (max_steps)
        assert trainer.stop() == 0, trainer.log()[-3000:]
    # The step after the last periodic checkpoint was saved on the clean shutdown.
    out = tmp_path / 'out'
    ptr = json.loads((out / 'latest.json').read_text())
    assert ptr['version'] == '000002', trainer.log()[-3000:]
    assert json.loads((out / ptr['state_json']).read_text())['step'] == 3
