"""Small helper to publish one node's status on /diagnostics."""
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)


class DiagnosticsPublisher:
    def __init__(self, node, name: str | None = None, hardware_id: str = 'hiors'):
        self._node = node
        self._name = name or node.get_fully_qualified_name()
        self._hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def publish(self, level, message: str, values: dict | None = None):
        if isinstance(level, int):
            level = bytes([level])
        status = DiagnosticStatus(level=level, name=self._name, message=message,
                                  hardware_id=self._hardware_id)
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in (values or {}).items()]
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [status]
        self._pub.publish(msg)
