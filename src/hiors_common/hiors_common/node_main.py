"""Entry-point helper: init rclpy, spin a node, and shut down cleanly on Ctrl-C or SIGTERM."""
import faulthandler
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


SHUTDOWN_TRACE_AFTER_S = 6.0


def run_node(node_factory, args=None, threads: int = 1,
             shutdown_trace_after_s: float = SHUTDOWN_TRACE_AFTER_S) -> int:
    """Create the node with `node_factory()` after rclpy.init and spin until shutdown.

    SIGTERM is turned into a normal shutdown (rclpy raises inside spin otherwise), and the
    node's `close()` runs if it has one, so a supervisor's stop leaves files consistent. A stop
    that takes longer than `shutdown_trace_after_s` dumps every thread's stack to stderr.
    """
    rclpy.init(args=sys.argv if args is None else args)
    node = None

    def _term(_sig, _frame):
        if rclpy.ok():
            rclpy.try_shutdown()

    # SIGINT and SIGTERM both end the spin loop; cleanup then runs without being interrupted.
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    try:
        node = node_factory()
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else None
        if executor is None:
            while rclpy.ok():
                rclpy.spin_once(node, timeout_sec=0.1)
        else:
            executor.add_node(node)
            while rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - anything else is a crash; report it, exit non-zero
        if not rclpy.ok():
            pass  # shutdown raced with spin_once: a normal stop
        else:
            if node is not None:
                node.get_logger().fatal(f'node crashed: {exc!r}')
            raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # A stop should take a second or two. If it hangs (a thread stuck in native code at
        # exit, say), every thread's stack goes to stderr - the node's log - before the
        # supervisor's SIGKILL, so the log says where it hung. Never cancelled: it also
        # covers interpreter finalization after this function returns.
        faulthandler.dump_traceback_later(shutdown_trace_after_s, exit=False)
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
