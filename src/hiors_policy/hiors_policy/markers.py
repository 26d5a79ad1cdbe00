"""RViz markers for a planned chunk: the tool-centre-point path (forward kinematics of the
joint targets) as a line strip with a sphere at the first and last point."""
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

try:  # FK of the simulated arm; without it the markers are skipped (a real arm has its own URDF)
    from hiors_sim.kinematics import ArmKinematics
except ImportError:  # pragma: no cover
    ArmKinematics = None


class ChunkMarkers:
    def __init__(self, frame_id: str = 'world'):
        self.frame_id = frame_id
        self.kin = ArmKinematics() if ArmKinematics is not None else None

    def build(self, chunk, stamp, executed_steps: int) -> MarkerArray | None:
        if self.kin is None:
            return None
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
