"""Starting the viser server: a free port near the one asked for, said out loud, and one URL."""

from __future__ import annotations

import errno
import socket
import sys

from neuralfields.errors import NeuralFieldsError

PORT_TRIES = 50


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now. Raises NeuralFieldsError for a host that
    cannot be listened on at all (not an address of this machine, or not an address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # asyncio's servers (viser's) set SO_REUSEADDR too, so a port in TIME_WAIT counts as free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise NeuralFieldsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        except socket.gaierror as exc:  # pragma: no cover - gaierror is an OSError subclass
            raise NeuralFieldsError(f"cannot listen on {host}: {exc}") from None
    return True


def pick_port(host: str, port: int, tries: int = PORT_TRIES) -> int:
    """`port` if it is free, else the next free one above it (saying so on stderr)."""
    if not 0 <= port <= 65535:
        raise NeuralFieldsError(f"--port must be between 0 and 65535, got {port}")
    if port == 0 or port_is_free(host, port):
        return port
    for candidate in range(port + 1, min(port + tries, 65536)):
        if port_is_free(host, candidate):
            print(f"port {port} is in use; using port {candidate} instead", file=sys.stderr)
            return candidate
    raise NeuralFieldsError(f"ports {port} to {min(port + tries, 65536) - 1} on {host} are all in use; "
                            "choose another with --port")


def start_server(host: str = "127.0.0.1", port: int = 8080, label: str | None = None):
    """A running viser server on `host` and the first free port from `port`; returns it.
    `url(server, host)` is the address to print."""
    import viser

    chosen = pick_port(host, port)
    server = viser.ViserServer(host=host, port=chosen, label=label, verbose=False)
    actual = server.get_port()
    if actual != chosen:  # taken between our check and viser's bind: viser moved on by itself
        print(f"port {chosen} was taken meanwhile; using port {actual}", file=sys.stderr)
    return server


def url(server, host: str) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{server.get_port()}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on `host` now (the system's pick), for tests and benchmarks."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
