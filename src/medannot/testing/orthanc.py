"""A local Orthanc PACS with its DICOMweb plugin, on loopback, for tests and for trying the PACS round trip.

Orthanc (Debian packages ``orthanc`` and ``orthanc-dicomweb``) is started as ``Orthanc CONFIG.json`` with
its storage and index in a folder of our choosing, HTTP on 127.0.0.1 only (``RemoteAccessAllowed`` false),
no DICOM (DIMSE) listener, and DICOMweb under ``/dicom-web/``. It is stopped by its process id.

From the shell (``make pacs`` / ``make pacs-stop`` call these)::

    python -m medannot.testing.orthanc start [DIR] [--port 8042]   # detached; prints the DICOMweb URL
    python -m medannot.testing.orthanc upload SERIES_DIR [DIR]      # STOW-RS every DICOM file of a folder
    python -m medannot.testing.orthanc status [DIR]
    python -m medannot.testing.orthanc stop [DIR]

From Python (tests)::

    with OrthancServer(tmp_path) as pacs:
        pacs.dicomweb_url  # http://127.0.0.1:PORT/dicom-web
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from medannot.errors import MedannotError, PacsError

__all__ = ["DICOMWEB_PLUGIN", "OrthancServer", "free_port", "main"]

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
STATE_FILE = "orthanc.json"
_INSTALL_HINT = "install the Debian packages orthanc and orthanc-dicomweb (listed in scripts/system_deps.txt; `make test` installs them)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _answers(url: str, timeout_s: float = 1.0, auth_header: str | None = None) -> bool:
    request = urllib.request.Request(url)
    if auth_header:
        request.add_header("Authorization", auth_header)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _is_orthanc_process(pid: int) -> bool:
    """True when ``pid`` runs the Orthanc binary (guards against killing a recycled process id)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == ORTHANC_BINARY


class OrthancServer:
    """One Orthanc process whose storage, index, configuration and log live in ``folder``.

    Args:
        folder: Working folder (created); holds ``config.json``, ``orthanc.log``, ``storage/`` and the state file.
        port: HTTP port on 127.0.0.1; ``None`` picks a free one.
        users: ``{user: password}`` to require HTTP basic authentication (none by default).
    """

    def __init__(self, folder: str | Path, port: int | None = None, users: dict[str, str] | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.port = port
        self.users = dict(users or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """Base HTTP address, e.g. ``http://127.0.0.1:8042``."""
        if self.port is None:
            raise PacsError("the Orthanc server has no port yet; call start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web``."""
        return f"{self.url}/dicom-web"

    def config(self) -> dict[str, Any]:
        """Orthanc configuration (JSON) for this folder and port."""
        storage = str(self.folder / "storage")
        return {
            "Name": "medannot-local-pacs",
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "DicomServerEnabled": False,
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpDescribeErrors": True,
            "StableAge": 1,
        }

    # ------------------------------------------------------------------ life cycle

    def _check_installed(self) -> str:
        binary = shutil.which(ORTHANC_BINARY) or (f"/usr/sbin/{ORTHANC_BINARY}" if Path(f"/usr/sbin/{ORTHANC_BINARY}").is_file() else None)
        if binary is None:
            raise PacsError(f"the {ORTHANC_BINARY} binary is not installed; {_INSTALL_HINT}")
        if not DICOMWEB_PLUGIN.is_file():
            raise PacsError(f"the Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} is missing; {_INSTALL_HINT}")
        return binary

    def _auth_header(self) -> str | None:
        if not self.users:
            return None
        import base64

        user, password = next(iter(self.users.items()))
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def is_running(self) -> bool:
        """True when the HTTP API answers ``/system``."""
        return self.port is not None and _answers(f"{self.url}/system", auth_header=self._auth_header())

    def start(self, timeout_s: float = 30.0, detach: bool = False) -> OrthancServer:
        """Start Orthanc and wait until ``/system`` answers.

        Args:
            timeout_s: How long to wait for the HTTP API, in seconds.
            detach: Run in its own session so it outlives this Python process (``make pacs``).

        Returns:
            self, running.

        Raises:
            PacsError: Orthanc or its DICOMweb plugin is not installed, the port is taken, or it did not come up.
        """
        binary = self._check_installed()
        self.folder.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        if fixed_port and not _port_is_free(int(self.port)):  # type: ignore[arg-type]
            raise PacsError(f"port {self.port} on 127.0.0.1 is in use; choose another with --port (0 picks a free one)")
        last_log = ""
        for _attempt in range(1 if fixed_port else 3):  # a free port may be taken between the check and Orthanc's bind
            if not fixed_port:
                self.port = free_port()
            config = self.folder / "config.json"
            config.write_text(json.dumps(self.config(), indent=2))
            log = self.folder / "orthanc.log"
            with open(log, "wb") as log_file:
                self.process = subprocess.Popen(
                    [binary, str(config)], stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.folder, start_new_session=detach,
                )  # fmt: skip
            self.pid = self.process.pid
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if self.is_running():
                    (self.folder / STATE_FILE).write_text(json.dumps({"pid": self.pid, "port": self.port}))
                    return self
                time.sleep(0.05)
            last_log = " ".join(log.read_text(errors="replace").strip().splitlines()[-1:]) if log.exists() else ""
            if self.process.poll() is None:  # alive but silent: give up on it
                self.stop()
                raise PacsError(f"Orthanc did not answer on {self.url}/system within {timeout_s:g} s; log: {self.folder / 'orthanc.log'}")
        raise PacsError(f"Orthanc exited at start-up ({last_log or 'no log'}); see {self.folder / 'orthanc.log'}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process by its id (SIGTERM, then SIGKILL after ``timeout_s`` seconds). Idempotent."""
        pid = self.pid
        if pid is None:
            return
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout_s)
        elif _is_orthanc_process(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _is_orthanc_process(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _is_orthanc_process(pid):
                os.kill(pid, signal.SIGKILL)
        self.process, self.pid = None, None
        (self.folder / STATE_FILE).unlink(missing_ok=True)

    @classmethod
    def attach(cls, folder: str | Path) -> OrthancServer | None:
        """The server recorded in ``folder``'s state file (started detached), or None when there is none."""
        state_file = Path(folder) / STATE_FILE
        try:
            state = json.loads(state_file.read_text())
            server = cls(folder, port=int(state["port"]))
            server.pid = int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _is_orthanc_process(server.pid):
            state_file.unlink(missing_ok=True)
            return None
        return server

    def __enter__(self) -> OrthancServer:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- command line


def _cmd_start(args: argparse.Namespace) -> int:
    existing = OrthancServer.attach(args.dir)
    if existing is not None:
        print(f"Orthanc already runs from {existing.folder} (pid {existing.pid}): {existing.dicomweb_url}")
        return 0
    server = OrthancServer(args.dir, port=args.port or None).start(detach=True)
    print(f"Orthanc runs (pid {server.pid}, data in {server.folder}); DICOMweb: {server.dicomweb_url}")
    print(f"store a DICOM folder: python -m medannot.testing.orthanc upload SERIES_DIR {args.dir}")
    print(f"annotate a study: medannot annotate dicomweb+{server.dicomweb_url}/studies/STUDY_UID --model brain-mri")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    server = OrthancServer.attach(args.dir)
    if server is None:
        print(f"no Orthanc recorded in {Path(args.dir).resolve()}")
        return 0
    pid = server.pid
    server.stop()
    print(f"Orthanc (pid {pid}) stopped")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    server = OrthancServer.attach(args.dir)
    if server is None or not server.is_running():
        print(f"no Orthanc runs from {Path(args.dir).resolve()}")
        return 1
    print(f"Orthanc runs (pid {server.pid}): {server.dicomweb_url}")
    return 0


def _cmd_upload(args: argparse.Namespace) -> int:
    from medannot.io.dicomweb import PacsClient

    server = OrthancServer.attach(args.dir)
    if server is None:
        raise PacsError(f"no Orthanc runs from {Path(args.dir).resolve()}; start it with `make pacs`")
    files = sorted(p for p in Path(args.series).rglob("*") if p.is_file() and not p.name.startswith("."))
    stored = PacsClient(server.dicomweb_url).store_files(files)
    studies = sorted({study for study, _ in stored})
    print(f"stored {len(stored)} instance(s) in {server.dicomweb_url}")
    for study in studies:
        print(f"  dicomweb+{server.dicomweb_url}/studies/{study}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m medannot.testing.orthanc start|stop|status|upload``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m medannot.testing.orthanc", description="A local Orthanc PACS on 127.0.0.1.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("start", "start detached"), ("stop", "stop by process id"), ("status", "is it answering?")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("dir", nargs="?", default=".pacs", help="working folder (default .pacs)")
        if name == "start":
            cmd.add_argument("--port", type=int, default=8042, help="HTTP port on 127.0.0.1 (0: a free one; default 8042)")
    upload = sub.add_parser("upload", help="store every DICOM file of a folder (STOW-RS)")
    upload.add_argument("series", help="folder of DICOM files")
    upload.add_argument("dir", nargs="?", default=".pacs", help="working folder of the running server (default .pacs)")
    args = parser.parse_args(argv)
    handlers = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status, "upload": _cmd_upload}
    try:
        return handlers[args.command](args)
    except MedannotError as exc:
        print(f"medannot: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
