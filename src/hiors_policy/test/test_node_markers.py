import numpy as np
from builtin_interfaces.msg import Time

from hiors_policy.markers import ChunkMarkers


def test_fk_path_and_joint_space_fallback():
    chunk = np.tile(np.linspace(0, 0.5, 50)[:, None], (1, 7))
    cm = ChunkMarkers('world')
    out = cm.build(chunk, Time(), executed_steps=20)
    if cm.kin is not None:           # the sim's FK: a tool path in metres, executed part shorter
        assert len(out.markers) == 2 and len(out.markers[0].points) == 50 and len(out.markers[1].points) == 20
        assert all(np.isfinite([p.x, p.y, p.z]).all() for p in out.markers[0].points)
    cm.kin = None                    # a robot without FK: joint-space strips, one per joint
    out = cm.build(chunk, Time(), executed_steps=20)
    planned = [m for m in out.markers if m.ns == 'planned_joints']
    assert len(planned) == 7 and len(planned[3].points) == 50
    assert abs(planned[3].points[-1].z - 0.5) < 1e-9
