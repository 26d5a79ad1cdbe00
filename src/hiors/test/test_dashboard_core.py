import json
import urllib.request

from hiors.dashboard_core import DashboardState, start_server


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_episodes_interventions_and_diagnostics():
    c = Clock()
    s = DashboardState(max_points=5, clock=c)
    s.episode_event('start')
    c.t = 1
    s.intervention(True)
    c.t = 2
    s.intervention(False)
    s.episode_event('success')
    s.episode_event('start')
    c.t = 4
    s.episode_event('failure')
    assert not s.episode_event('bogus')
    s.diagnostics([('trainer', 0, 'training', [('loss', '0.5'), ('accepted', '3'), ('rejected', '1'),
                                              ('note', 'text'), ('version', 'nan')]),
                   ('policy', 2, 'running (held ERROR 3 s ago: checkpoint rejected: bad signature)',
                    [('last_error', 'checkpoint rejected: bad signature'), ('last_error_level', 'ERROR'),
                     ('last_error_time', '12:00:01'), ('last_error_age_s', '3.0')])])
    s.policy_version_msg('000007')
    snap = s.snapshot()
    assert snap['episodes']['total'] == 2 and snap['episodes']['success'] == 1
    assert snap['episodes']['success_rate'] == 0.5
    assert snap['episodes']['takeover_rate'] == 0.5
    assert abs(snap['intervention']['time_fraction'] - 0.25) < 1e-9
    assert snap['trainer'] == {'loss': 0.5, 'accepted': 3.0, 'rejected': 1.0}
    assert snap['policy_version'] == '000007'
    assert snap['nodes']['trainer'] == {'level': 'OK', 'message': 'training'}
    pol = snap['nodes']['policy']
    assert pol['level'] == 'ERROR' and pol['last_error'] == 'checkpoint rejected: bad signature'
    assert pol['last_error_time'] == '12:00:01' and 'last_error' not in snap['diagnostics']['policy']
    for _ in range(20):
        s.episode_event('start')
        s.episode_event('abort')
    assert len(s.snapshot()['episodes']['recent']) == 5   # bounded
    json.dumps(s.snapshot())


def test_http_server_serves_page_and_state():
    s = DashboardState()
    s.episode_event('start')
    s.episode_event('success')
    server, url = start_server(s, '127.0.0.1', 0)
    try:
        assert url.startswith('http://127.0.0.1:')
        page = urllib.request.urlopen(url, timeout=5).read().decode()
        assert '/api/state' in page and 'http' not in page.replace('/api/state', '').split('<script>')[1]
        st = json.loads(urllib.request.urlopen(url + 'api/state', timeout=5).read())
        assert st['episodes']['success_rate'] == 1.0
    finally:
        server.shutdown()
        server.server_close()
