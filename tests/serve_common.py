"""What the serve tests share: the app on a loopback socket, served by uvicorn in a thread."""

from __future__ import annotations

import socket
import threading


class Running:
    """The app on a loopback socket, served by uvicorn in a thread; stop() shuts it down and joins it."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))  # bound before the thread starts: clients queue until it accepts
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()
