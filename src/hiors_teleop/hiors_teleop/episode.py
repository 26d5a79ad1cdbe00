"""Episode control vocabulary (ROS-agnostic).

Events on /hiors/episode/event (std_msgs/String): start, success, failure, abort.
`reset` is not an event: it is a std_srvs/Trigger call to the robot's reset service (parameter),
followed by a `start` only when the caller asks for it.
"""
EVENTS = ('start', 'success', 'failure', 'abort')
ACTIONS = EVENTS + ('reset',)


def normalise(action: str) -> str:
    a = str(action).strip().lower()
    if a not in ACTIONS:
        raise ValueError(f'unknown episode action {action!r}; known: {", ".join(ACTIONS)}')
    return a


class EpisodeTracker:
    """Keeps the device-side view of the episode so a label is not sent twice by a bouncing button
    and so `success`/`failure` outside an episode are reported instead of silently sent."""

    def __init__(self, debounce_s: float = 0.3):
        self.debounce_s = debounce_s
        self.active = False
        self._last = {}

    def accept(self, action: str, now: float) -> tuple[bool, str]:
        a = normalise(action)
        if now - self._last.get(a, -1e9) < self.debounce_s:
            return False, f'{a}: debounced'
        self._last[a] = now
        if a == 'start':
            self.active = True
        elif a in ('success', 'failure', 'abort'):
            was = self.active
            self.active = False
            if not was:
                # Still sent: the recorder may have started the episode from another source.
                return True, f'{a} sent with no episode started from this device'
        return True, ''
