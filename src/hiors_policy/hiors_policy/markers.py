"""RViz markers for a planned chunk: the tool-centre-point path (forward kinematics of the
joint targets) as a line strip with a sphere at the first and last point."""
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

try:  # FK of the simulated arm; without it the markers are skipped (a real arm has its own URDF)
    from hiors_sim.kinematics import ArmKinematics
except ImportError:  # pragma: no cover
    ArmKinematics = None

STEP_X = 0.02       # joint-space plot: metres per chunk step along x, one row per joint along y
ROW_Y = 0.1


class ChunkMarkers:
    def __init__(self, frame_id: str = 'world'):
        self.frame_id = frame_id
        self.kin = ArmKinematics() if ArmKinematics is not None else None

    def build(self, chunk, stamp, executed_steps: int) -> MarkerArray:
        if self.kin is None:
            return self._joint_space(chunk, stamp, executed_steps)
        points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                  for p in (self.kin.fk(q[:6])[0] for q in chunk)]
        strip = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, ns='planned_chunk', id=0)
        strip.header.frame_id, strip.header.stamp = self.frame_id, stamp
        strip.scale.x = 0.004
        strip.color.r, strip.color.g, strip.color.b, strip.color.a = 0.1, 0.6, 1.0, 0.9
        strip.points = points
        executed = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, ns='executed_part', id=1)
        executed.header = strip.header
        executed.scale.x = 0.008
        executed.color.r, executed.color.g, executed.color.b, executed.color.a = 1.0, 0.5, 0.0, 1.0
        executed.points = points[:max(2, executed_steps)]
        return MarkerArray(markers=[strip, executed])

    def _joint_space(self, chunk, stamp, executed_steps: int) -> MarkerArray:
        """Without FK: one line strip per joint (x = step, y = joint row, z = target), plus the
        executed part of all joints in a second colour."""
        markers = []
        for j in range(chunk.shape[1]):
            for ns, n, width, rgb in (('planned_joints', len(chunk), 0.004, (0.1, 0.6, 1.0)),
                                      ('executed_joints', max(2, executed_steps), 0.008, (1.0, 0.5, 0.0))):
                m = Marker(type=Marker.LINE_STRIP, action=Marker.ADD, ns=ns, id=j)
                m.header.frame_id, m.header.stamp = self.frame_id, stamp
                m.scale.x = width
                m.color.r, m.color.g, m.color.b, m.color.a = (*rgb, 1.0)
                m.points = [Point(x=i * STEP_X, y=j * ROW_Y, z=float(chunk[i, j])) for i in range(min(n, len(chunk)))]
                markers.append(m)
        return MarkerArray(markers=markers)
