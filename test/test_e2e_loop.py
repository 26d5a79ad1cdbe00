"""The whole Hi-ORS graph as separate processes (sim, mux, policy, recorder, trainer, simulated
human), started through the pip-only runner's graph + supervisor: episodes with takeovers are
recorded, the trainer trains on the accepted ones and publishes a checkpoint, and the running
policy swaps it in. No node may crash or restart."""
import os

from std_msgs.msg import Bool, String

from hiors.graph import bringup_graph
from hiors.supervisor import Supervisor
from hiors_common.testing import spin_until
from hiors_common.topics import EPISODE_EVENT, INTERVENTION, POLICY_VERSION, latched_qos


def test_online_loop_trains_and_hot_swaps(tmp_path, test_node):
    key = tmp_path / 'key'
    key.write_text('e2e-test-key')
    env = dict(os.environ, HIORS_CHECKPOINT_KEY_FILE=str(key))
    specs = bringup_graph({
        'teleop': 'sim_human', 'sim_human_mode': 'intervene', 'num_episodes': '0',
        'episode_dir': str(tmp_path / 'episodes'), 'checkpoint_dir': str(tmp_path / 'checkpoints'),
        'episode_timeout_s': '25.0', 'dashboard': 'false',
        'sim.camera_width': '96', 'sim.camera_height': '96',
        'trainer.checkpoint_every_steps': '10', 'trainer.batch_size': '4',
    })
    latched = latched_qos()
    versions, interventions, events = [], [], []
    test_node.create_subscription(String, POLICY_VERSION, lambda m: versions.append(m.data), latched)
    test_node.create_subscription(Bool, INTERVENTION, lambda m: interventions.append(m.data), latched)
    test_node.create_subscription(String, EPISODE_EVENT, lambda m: events.append(m.data), 10)
    sup = Supervisor(specs, str(tmp_path / 'logs'), env=env, echo=lambda m: None).start()

    def logs():
        return '\n'.join(f'--- {p.name}\n' + p.read_text()[-3000:] for p in (tmp_path / 'logs').glob('*.log'))

    try:
        def swapped():
            assert sup.poll(), 'a required node ended'
            assert not sup.failed and not sup.restart_counts, f'{sup.failed} {sup.restart_counts}'
            return len(set(versions)) >= 2 and 'success' in events and False in interventions[1:]
        ok = spin_until(test_node, swapped, timeout=240)
        assert ok, f'versions={versions} events={events} interventions={interventions}\n{logs()}'
    finally:
        sup.shutdown()
    assert True in interventions, 'the simulated human never took over'
    assert not sup.failed and not sup.restart_counts, logs()
    bad = {n: c for n, c in sup.exit_codes.items() if c != 0}
    assert not bad, f'nodes exited badly: {bad}\n{logs()}'
    from hiors_recorder.dataset import list_episodes
    assert any(e.outcome == 'success' for e in list_episodes(str(tmp_path / 'episodes')))
