"""A local HTTP server on 127.0.0.1 for download tests, with switches for failures.

``serve(directory)`` yields a ``Server``: ``base`` (its URL), ``requests`` (the paths of every GET),
and what to do instead of serving a path: ``status`` (an HTTP error code), ``truncate`` (send half the
body, then close), ``stall`` (send half the body, then wait until the server stops), ``delay``
(seconds to wait before answering any GET).
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Server:
    base: str = ""
    requests: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    stall: set[str] = field(default_factory=set)
    delay: float = 0.0
    stopping: threading.Event = field(default_factory=threading.Event)

    def count(self, path: str) -> int:
        return self.requests.count(path)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args: object, server_state: Server, **kwargs: object) -> None:
        self.state = server_state
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.state
        state.requests.append(self.path)
        if state.delay:
            time.sleep(state.delay)
        if self.path in state.status:
            self.send_error(state.status[self.path])
            return
        if self.path in state.truncate or self.path in state.stall:
            data = Path(self.translate_path(self.path)).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if self.path in state.stall:
                state.stopping.wait(60)
            self.close_connection = True
            return
        super().do_GET()


@contextmanager
def serve(directory: Path) -> Iterator[Server]:
    state = Server()
    handler = functools.partial(_Handler, directory=str(directory), server_state=state)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()
