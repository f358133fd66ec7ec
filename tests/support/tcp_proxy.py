"""A small fault-injecting TCP proxy for tests: put it between a client and MariaDB, then cut,
black-hole or restore the path on command.

* ``cut()``: close every open connection and refuse new ones (a crashed server, a closed port);
* ``blackhole()``: accept connections but forward nothing (a hung server, a dropped network);
* ``restore()``: forward again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TCPProxy:
    """Forwards 127.0.0.1:<port> to ``target``; faults are switched from the test's thread."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 3306) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode = "forward"
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stop = threading.Event()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def url(self, database: str, user: str = "root") -> str:
        """A mysql+pymysql URL that goes through this proxy."""
        return f"mysql+pymysql://{user}@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        with self._lock:
            self._mode = "refuse"
            conns, self._conns = self._conns, set()
        for conn in conns:
            _close(conn)

    def blackhole(self) -> None:
        """Keep connections open but forward nothing."""
        with self._lock:
            self._mode = "blackhole"

    def restore(self) -> None:
        """Forward again (new connections; old ones stay cut)."""
        with self._lock:
            self._mode = "forward"

    def close(self) -> None:
        """Stop the proxy."""
        self._stop.set()
        self.cut()
        _close(self._listener)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "refuse":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    with self._lock:
                        mode, alive = self._mode, client in self._conns
                    if not alive:
                        return
                    if mode == "blackhole":
                        self._stop.wait(0.05)  # leave the bytes unread, without spinning
                        continue
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                with self._lock:
                    if client not in self._conns:
                        return
        except OSError:
            return
        finally:
            selector.close()
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
