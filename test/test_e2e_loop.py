"""The whole Hi-ORS graph as separate processes (sim, mux, policy, recorder, trainer, simulated
human), started through the pip-only runner's graph + supervisor: episodes with takeovers are
recorded, the trainer trains on the accepted ones and publishes a checkpoint, and the running
policy swaps it in; the simulated human starts an episode only once the trainer has caught up
with the frames so far (train_steps_per_frame). No node may crash or restart."""
import os
import time

from diagnostic_msgs.msg import DiagnosticArray

from std_msgs.msg import Bool, String

from hiors.graph import bringup_graph
from hiors.supervisor import Supervisor
from hiors_common.testing import spin_until
from hiors_common.topics import DIAGNOSTICS, EPISODE_EVENT, INTERVENTION, POLICY_VERSION, latched_qos
from hiors_trainer.telemetry import STATUS_NAME

STEPS_PER_FRAME = 0.5


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
        'sim_human.train_steps_per_frame': str(STEPS_PER_FRAME),
    })
    latched = latched_qos()
    versions, interventions, events = [], [], []
    test_node.create_subscription(String, POLICY_VERSION, lambda m: versions.append(m.data), latched)
    test_node.create_subscription(Bool, INTERVENTION, lambda m: interventions.append(m.data), latched)
    starts, trainer_steps = [], []      # monotonic times of 'start'; (time, step) from the trainer
    test_node.create_subscription(String, EPISODE_EVENT, lambda m: (
        events.append(m.data), m.data == 'start' and starts.append(time.monotonic())), 10)

    def on_diag(msg):
        for st in msg.status:
            if st.name == STATUS_NAME:
                step = {kv.key: kv.value for kv in st.values}.get('step')
                if step is not None:
                    trainer_steps.append((time.monotonic(), int(float(step))))
    test_node.create_subscription(DiagnosticArray, DIAGNOSTICS, on_diag, 10)
    sup = Supervisor(specs, str(tmp_path / 'logs'), env=env, echo=lambda m: None).start()

    def logs():
        return '\n'.join(f'--- {p.name}\n' + p.read_text()[-3000:] for p in (tmp_path / 'logs').glob('*.log'))

    try:
        def swapped():
            assert sup.poll(), 'a required node ended'
            assert not sup.failed and not sup.restart_counts, f'{sup.failed} {sup.restart_counts}'
            # ... and the episode after the first success has begun (the trainer's wait is checked there)
            ends = [e for e in events if e != 'start']
            return (len(set(versions)) >= 2 and 'success' in ends and False in interventions[1:]
                    and len(starts) >= ends.index('success') + 2)
        ok = spin_until(test_node, swapped, timeout=240)
        assert ok, f'versions={versions} events={events} interventions={interventions}\n{logs()}'
    finally:
        sup.shutdown()
    assert True in interventions, 'the simulated human never took over'
    assert not sup.failed and not sup.restart_counts, logs()
    bad = {n: c for n, c in sup.exit_codes.items() if c != 0}
    assert not bad, f'nodes exited badly: {bad}\n{logs()}'
    from hiors_recorder.dataset import list_episodes
    recorded = list_episodes(str(tmp_path / 'episodes'))
    assert any(e.outcome == 'success' for e in recorded)
    # The episode after the first success began only after the trainer had taken ~STEPS_PER_FRAME
    # steps per frame of the episodes so far (before a success it has nothing to train on, so the
    # human does not wait; it counts the robot states it saw, the recorder's steps agree to a few).
    k = [e.outcome for e in recorded].index('success')      # oldest first
    frames = sum(e.steps for e in recorded[:k + 1])
    seen = [step for t, step in trainer_steps if t <= starts[k + 1]]
    assert seen and max(seen) >= 0.8 * STEPS_PER_FRAME * frames, (k, frames, trainer_steps, starts)
