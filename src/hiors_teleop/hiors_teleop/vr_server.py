"""The WebXR page server (ROS-agnostic): one port serves the page over HTTP (GET /) and the
controller stream over a websocket (/ws), on its own asyncio thread. The node reads the latest
sample with `take()`. Listens on 127.0.0.1 by default (WebXR needs a secure context: localhost
counts; a headset on the LAN needs https or a tunnel, which is out of scope here)."""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from .vr_mapping import parse_message

PAGE_PATH = os.path.join(os.path.dirname(__file__), 'web', 'vr.html')


class VRServer:
    def __init__(self, host: str = '127.0.0.1', port: int = 8765, page_path: str = PAGE_PATH,
                 trigger_threshold: float = 0.5, head_script: str = ''):
        """head_script: JavaScript put first in the page's <head> (tests use it to stand in for a
        WebXR device, which cannot exist on a headless machine)."""
        self.host, self.port = host, port
        with open(page_path, 'rb') as f:
            self.page = f.read()
        if head_script:
            self.page = self.page.replace(b'<head>', b'<head>\n<script>' + head_script.encode() + b'</script>', 1)
        self._lock = threading.Lock()
        self._sample = None
        self._sample_t = None
        self._events = []
        self.clients = 0
        self.hello = None
        self.received = 0
        self.rejected = 0
        self.last_error = ''
        self.trigger_threshold = trigger_threshold
        self.changed = threading.Event()   # set when trigger state / buttons change or an event arrives
        self._edge_state = None
        self._status = {'type': 'status', 'takeover': False, 'healthy': False, 'message': 'starting'}
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._start_error = None

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self, timeout: float = 10.0):
        self._thread = threading.Thread(target=self._run, name='vr-server', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError('VR server did not start')
        if self._start_error is not None:
            raise self._start_error
        return self

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as exc:  # noqa: BLE001 - surfaced to start()
            self._start_error = exc
            self._ready.set()

    async def _serve(self):
        from websockets.asyncio.server import serve
        async with serve(self._handler, self.host, self.port, process_request=self._http,
                         compression=None, max_size=65536, ping_interval=None) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]   # port 0 = any free port
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

    def stop(self):
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def url(self) -> str:
        return f'http://{self.host}:{self.port}/'

    # ---- HTTP + websocket ---------------------------------------------------------------------
    def _http(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response
        path = request.path.split('?', 1)[0]
        if path == '/ws':
            return None        # continue with the websocket handshake
        if path in ('/', '/index.html', '/vr.html'):
            headers = Headers([('Content-Type', 'text/html; charset=utf-8'),
                               ('Content-Length', str(len(self.page))), ('Cache-Control', 'no-store')])
            return Response(200, 'OK', headers, self.page)
        return connection.respond(404, 'not found\n')

    async def _handler(self, ws):
        with self._lock:
            self.clients += 1
        sender = asyncio.ensure_future(self._send_status(ws))
        try:
            async for text in ws:
                now = time.monotonic()
                try:
                    msg = parse_message(json.loads(text))
                except (ValueError, TypeError) as exc:
                    with self._lock:
                        self.rejected += 1
                        self.last_error = str(exc)
                    continue
                with self._lock:
                    self.received += 1
                    if msg['type'] == 'pose':
                        self._sample, self._sample_t = msg, now
                        edge = (msg['trigger'] >= self.trigger_threshold, tuple(msg['buttons']))
                        if edge != self._edge_state:
                            self._edge_state = edge
                            self.changed.set()
                    elif msg['type'] == 'event':
                        self._events.append(msg['action'])
                        self.changed.set()
                    else:
                        self.hello = msg
        except Exception:  # noqa: BLE001 - a dropped connection is a lost device, reported by the node
            pass
        finally:
            sender.cancel()
            with self._lock:
                self.clients -= 1
                if self.clients == 0:
                    self._sample = None      # no stale pose survives a disconnect

    async def _send_status(self, ws):
        while True:
            with self._lock:
                text = json.dumps(self._status)
            await ws.send(text)
            await asyncio.sleep(0.2)

    # ---- for the node -------------------------------------------------------------------------
    def set_status(self, **status):
        with self._lock:
            self._status = dict(self._status, **status)

    def take(self):
        """(latest pose sample or None, its receive time, events since the last call, clients)."""
        with self._lock:
            events, self._events = self._events, []
            return self._sample, self._sample_t, events, self.clients
