"""A small fault-injecting TCP proxy for tests: put it between a client and MariaDB, then switch
faults on and off from the test's thread.

* ``restore()``: accept and forward (the normal state);
* ``delay(seconds)``: forward, each chunk held back ``seconds`` (a slow or far database);
* ``blackhole()``: accept connections but forward nothing (a hung server, a dropped network);
* ``reset()``: reset every open connection with a TCP RST, keep accepting (a network blip);
* ``cut()``: reset every open connection and reset new ones at once (a crashed server);
* ``refuse()``: stop listening, so connecting fails with "connection refused" (a closed port).

``connections`` says how many client connections are open through it, for leak checks.
No maintained Python library does this in-process (toxiproxy needs its own server), so it is
~150 lines here.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST instead of FIN


class TCPProxy:
    """Forwards 127.0.0.1:<port> to ``target``; faults are switched from the test's thread."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 3306) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._mode = "forward"
        self._delay = 0.0
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, socket.socket] = {}  # client -> upstream
        self._stop = threading.Event()
        self._start_accepting()

    def url(self, database: str, user: str = "root") -> str:
        """A mysql+pymysql URL that goes through this proxy."""
        return f"mysql+pymysql://{user}@127.0.0.1:{self.port}/{database}?charset=utf8mb4"

    @property
    def connections(self) -> int:
        """Client connections open through the proxy now."""
        with self._lock:
            return len(self._conns)

    def restore(self) -> None:
        """Accept and forward again without delay (connections reset earlier stay gone)."""
        with self._lock:
            self._mode, self._delay = "forward", 0.0
            listening = self._listener.fileno() != -1
        if not listening:
            self._listener = socket.create_server(("127.0.0.1", self.port))
            self._start_accepting()

    def delay(self, seconds: float) -> None:
        """Forward, holding each chunk back ``seconds`` (both directions)."""
        with self._lock:
            self._mode, self._delay = "forward", seconds

    def blackhole(self) -> None:
        """Keep connections open but forward nothing."""
        with self._lock:
            self._mode = "blackhole"

    def reset(self) -> None:
        """Reset every open connection; new ones are forwarded."""
        self._reset_all()

    def cut(self) -> None:
        """Reset every open connection and every new one."""
        with self._lock:
            self._mode = "refuse"
        self._reset_all()

    def refuse(self) -> None:
        """Stop listening (connects fail with ECONNREFUSED) and reset open connections."""
        self.cut()
        # shutdown() wakes the thread blocked in accept() and stops listening; close() alone
        # leaves the port accepting until that call returns.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        _close(self._listener)

    def close(self) -> None:
        """Stop the proxy."""
        self._stop.set()
        self.refuse()

    def _reset_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, {}
        for client, upstream in conns.items():
            _reset(client)
            _reset(upstream)

    def _start_accepting(self) -> None:
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._mode
            if mode == "refuse":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._conns[client] = upstream
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.2):
                    with self._lock:
                        mode, delay, alive = self._mode, self._delay, client in self._conns
                    if not alive:
                        return
                    if mode == "blackhole":
                        self._stop.wait(0.05)  # leave the bytes unread, without spinning
                        continue
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if delay:
                        self._stop.wait(delay)
                    key.data.sendall(data)
                with self._lock:
                    if client not in self._conns:
                        return
        except OSError:
            return
        finally:
            selector.close()
            with self._lock:
                self._conns.pop(client, None)
            _close(client)
            _close(upstream)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
