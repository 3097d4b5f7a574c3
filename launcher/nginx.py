"""The reverse proxy of `--workers` mode: nginx, its config generated from `launcher.settings`.

nginx runs unprivileged from a temp folder (`nginx -p TMP -c TMP/nginx.conf -e TMP/error.log`),
in the foreground with its master process, so the launcher supervises it like a worker. As root
its worker processes run as `nobody` (the `user` directive, only then), and the folder is made
traversable for them.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from launcher.settings import Settings

PACKAGE = "nginx"  # Debian's package
MISSING = f"--workers needs nginx as its proxy: install Debian's `{PACKAGE}` package (apt-get install {PACKAGE})."
ENVELOPE = 64 * 1024  # a multipart request's own bytes around the largest accepted file
UNITS = {"b": 1, "kb": 1024, "k": 1024, "mb": 1024**2, "m": 1024**2, "gb": 1024**3, "g": 1024**3}


def binary() -> str | None:
    """nginx's path (Debian installs it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


def size_bytes(size: str) -> int:
    """'25mb' (Gradio's `max_file_size` spelling) or '25m' (nginx's) in bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", size.lower())
    if not match or match[2] not in UNITS:
        raise ValueError(f"FMG_PROXY_BODY_MAX must be a size such as 25m or 25mb, not {size!r}.")
    return int(float(match[1]) * UNITS[match[2]])


def render(settings: Settings, tmp: Path, ports: list[int], max_upload: str, sticky: bool = True) -> str:
    """nginx.conf for `ports` (the workers, on 127.0.0.1). `sticky=False` gives plain round robin:
    only for showing what stickiness prevents (tests/test_proxy.py)."""
    body = settings.body_max or max_upload
    values = {
        "tmp": str(tmp),
        "user": _user_line(),
        "processes": str(settings.processes),
        "access_log": "access_log /dev/stdout;" if settings.access_log else "access_log off;",
        "body_max": str(size_bytes(body) + ENVELOPE),
        "body_label": _label(size_bytes(body)),
        "rate": settings.rate,
        "burst": str(settings.burst),
        "join_rate": settings.join_rate,
        "join_burst": str(settings.join_burst),
        "upload_rate": settings.upload_rate,
        "upload_burst": str(settings.upload_burst),
        "connections": str(settings.connections),
        "read_timeout_s": str(settings.read_timeout_s),
        "balance": "hash $fmg_route consistent;" if sticky else "# round robin: no stickiness",
        "servers": "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout={settings.fail_timeout_s}s;" for port in ports
        ),
        "listen": _listen(settings.host, settings.port),
    }
    template = resources.files("launcher").joinpath("nginx.conf.template").read_text()
    text = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m[1]], template)
    return text


def write(settings: Settings, tmp: Path, ports: list[int], max_upload: str, sticky: bool = True) -> list[str]:
    """Write the config into `tmp` and return nginx's command line."""
    path = tmp / "nginx.conf"
    path.write_text(render(settings, tmp, ports, max_upload, sticky))
    if os.geteuid() == 0:
        tmp.chmod(0o711)  # nginx's workers (nobody) reach their temp folders inside it
    nginx = binary()
    if nginx is None:
        raise FileNotFoundError(MISSING)
    return [nginx, "-p", str(tmp), "-c", str(path), "-e", str(tmp / "error.log")]


def temp_parent() -> str | None:
    """Where nginx's temp folder goes: the usual temp folder, except as root when one of its
    parents is closed to others (a TMPDIR of 0700): nginx's workers run as nobody and write
    request bodies there, so then /tmp."""
    if os.geteuid() != 0:
        return None
    folder = Path(tempfile.gettempdir()).resolve()
    if all(p.stat().st_mode & 0o001 for p in [folder, *folder.parents]):
        return None
    return "/tmp"


def _user_line() -> str:
    if os.geteuid() != 0:
        return "# not root: nginx's workers run as this user"
    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"


def _listen(host: str, port: int) -> str:
    if host in ("", "0.0.0.0"):
        return str(port)
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _label(size: int) -> str:
    return f"{size / 1024**2:g} MB" if size >= 1024**2 else f"{size / 1024:g} KB"
