"""The first generation's two-tier servers: nginx in front of PHP-FPM or of uWSGI.

nginx (one worker per core, epoll) holds the client connections, keep-alive
and idle ones included, and hands each request to the application tier over
a Unix socket in the peer's temporary prefix, on a connection of its own per
request (nginx's default: no ``fastcgi_keep_conn``, no upstream keepalive):

- ``nginx-php-fpm``: FastCGI to a static pool of P PHP-FPM children
  (``pm = static``, ``pm.max_children = P``, ``listen.backlog`` = backlog),
  each running ``php/work.php`` one request at a time;
- ``nginx-uwsgi``: the uwsgi protocol to uWSGI with P processes x T threads
  (T = workers) running the WSGI app of ``python.py``.

Both tiers run in one process tree under the pid the lab holds: ``sh``
starts the application server in the background and then *becomes* nginx
(``exec``), so nginx's master is the parent of the PHP-FPM or uWSGI master,
and no helper interpreter is left in the tree to be counted in its memory.
Everything listens on 127.0.0.1 or in the prefix; nothing touches the
system's nginx or PHP-FPM services.
"""

from __future__ import annotations

import os
import pwd
import resource
import shlex
import shutil
import sysconfig
from pathlib import Path

from simlab.provenance import ROOT
from simlab.real.peers.build import (
    MissingRuntime,
    PeerConfig,
    find_program,
    start_peer,
    temp_prefix,
    version_line,
)
from simlab.real.processes import Managed

__all__ = [
    "fpm_argv",
    "fpm_config",
    "php_fpm_version",
    "start_nginx_php_fpm",
    "start_nginx_uwsgi",
    "uwsgi_argv",
    "uwsgi_version",
    "versions",
]

PHP_SCRIPT = Path(__file__).parent / "php" / "work.php"
NGINX_PACKAGES = ("nginx-light",)
PHP_PACKAGES = ("php-fpm",)
UWSGI_PACKAGES = ("uwsgi", "uwsgi-plugin-python3")
# An hour: long enough that no measured request, and no idle client, is cut.
LONG_S = 3600
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
PYTHON_PLUGIN = Path("/usr/lib/uwsgi/plugins/python3_plugin.so")


def _somaxconn() -> int:
    try:
        return int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return 4096


def _backlog(cfg: PeerConfig) -> int:
    # uWSGI refuses a queue over somaxconn; the kernel would cap the others anyway.
    return max(1, min(_somaxconn(), 4096 if cfg.backlog is None else cfg.backlog))


def _nofile() -> int:
    # nginx raises its workers' soft limit to this (worker_rlimit_nofile); above
    # the hard limit it would need CAP_SYS_RESOURCE, which a container may lack.
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def nginx_config(prefix: Path, port: int, backlog: int, upstream: str) -> str:
    nofile = _nofile()
    # As root, nginx's workers would become "nobody", who cannot enter the
    # prefix's sockets; they stay the user that started them.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process on;
{user}
worker_processes auto;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{
    # Each client connection, plus one to the application per request in flight.
    worker_connections {nofile - 64};
}}
http {{
    access_log off;
{temp}
    # The load generator holds idle keep-alive connections for the whole run,
    # some opened long before their first request: nothing idle is cut. nginx's
    # header timeout also runs from accept, so it cannot be short here.
    keepalive_timeout {LONG_S}s;
    keepalive_requests 100000000;
    client_header_timeout {LONG_S}s;
    client_body_timeout {LONG_S}s;
    send_timeout {LONG_S}s;
    large_client_header_buffers 4 64k;
    server {{
        listen 127.0.0.1:{port} backlog={backlog};
        location / {{
{upstream}
        }}
    }}
}}
"""


def _fastcgi(prefix: Path) -> str:
    params = {
        "SCRIPT_FILENAME": str(PHP_SCRIPT),
        "QUERY_STRING": "$query_string",
        "REQUEST_METHOD": "$request_method",
        "REQUEST_URI": "$request_uri",
        "DOCUMENT_URI": "$document_uri",
        "SERVER_PROTOCOL": "$server_protocol",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REMOTE_ADDR": "$remote_addr",
        "SERVER_ADDR": "$server_addr",
        "SERVER_PORT": "$server_port",
    }
    lines = [f"            fastcgi_param {k} {v};" for k, v in params.items()]
    return "\n".join(
        [
            f"            fastcgi_pass unix:{prefix}/php-fpm.sock;",
            f"            fastcgi_read_timeout {LONG_S}s;",
            f"            fastcgi_send_timeout {LONG_S}s;",
            *lines,
        ]
    )


def _uwsgi(prefix: Path) -> str:
    params = {
        "REQUEST_METHOD": "$request_method",
        "QUERY_STRING": "$query_string",
        "REQUEST_URI": "$request_uri",
        "PATH_INFO": "$document_uri",
        "SERVER_PROTOCOL": "$server_protocol",
        "SERVER_NAME": "$server_name",
        "SERVER_PORT": "$server_port",
        "REMOTE_ADDR": "$remote_addr",
    }
    lines = [f"            uwsgi_param {k} {v};" for k, v in params.items()]
    return "\n".join(
        [
            f"            uwsgi_pass unix:{prefix}/uwsgi.sock;",
            f"            uwsgi_read_timeout {LONG_S}s;",
            f"            uwsgi_send_timeout {LONG_S}s;",
            *lines,
        ]
    )


def fpm_config(prefix: Path, children: int, backlog: int, backend_port: int) -> str:
    """A PHP-FPM master with one static pool of ``children``, logging to stderr."""
    return f"""
[global]
pid = {prefix}/php-fpm.pid
error_log = /proc/self/fd/2
log_level = warning
daemonize = no
; Enough file descriptors for a thousand children's pipes and sockets.
rlimit_files = {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}

[work]
listen = {prefix}/php-fpm.sock
listen.backlog = {backlog}
listen.mode = 0666
pm = static
pm.max_children = {children}
; No limit on a request's time: a 10 s request must not be cut.
request_terminate_timeout = 0
php_admin_value[max_execution_time] = 0
clear_env = yes
env[SIMLAB_BACKEND_PORT] = {backend_port}
"""


def _php_fpm() -> str:
    return find_program(
        ("php-fpm", "php-fpm8.4", "php-fpm8.3", "php-fpm8.2", "php-fpm8.1"),
        peer="nginx-php-fpm",
        packages=PHP_PACKAGES,
    )


def fpm_argv(prefix: Path) -> list[str]:
    """php-fpm in the foreground on the prefix's configuration (-R: root may run it here)."""
    argv = [_php_fpm(), "-F", "-y", str(prefix / "php-fpm.conf"), "-p", str(prefix)]
    if os.geteuid() == 0:
        argv.append("-R")
    return argv


def uwsgi_argv(prefix: Path, processes: int, threads: int, backlog: int) -> list[str]:
    """uWSGI serving the WSGI app of ``python.py`` on a Unix socket in the prefix."""
    uwsgi = find_program(("uwsgi",), peer="nginx-uwsgi", packages=UWSGI_PACKAGES)
    if not PYTHON_PLUGIN.exists():
        raise MissingRuntime(
            f"nginx-uwsgi: {PYTHON_PLUGIN} is not installed; install it with: "
            f"apt-get install {' '.join(UWSGI_PACKAGES)}"
        )
    argv = [
        uwsgi,
        "--plugin",
        "python3",
        "--master",
        "--die-on-term",
        "--socket",
        str(prefix / "uwsgi.sock"),
        "--chmod-socket=666",
        "--processes",
        str(processes),
        "--listen",
        str(backlog),
        # The largest request header block the uwsgi protocol can carry (nginx
        # lets through up to 64 KiB per line): without it, 4 KiB.
        "--buffer-size",
        "65535",
        # No harakiri: a 10 s request must not be cut.
        "--harakiri",
        "0",
        # Its banner and notices go to a log in the prefix, shown if it fails to start.
        "--disable-logging",
        "--logto",
        str(prefix / "uwsgi.log"),
        "--pythonpath",
        str(ROOT),
        "--pythonpath",
        sysconfig.get_paths()["purelib"],
        "--module",
        "simlab.real.peers.python:wsgi_app",
    ]
    if threads > 1:
        argv += ["--threads", str(threads)]
    return argv


def _nginx() -> str:
    return find_program(("nginx",), peer="nginx", packages=NGINX_PACKAGES)


def _start(
    name: str,
    cfg: PeerConfig,
    *,
    prefix: Path,
    app_argv: list[str],
    files: dict[str, str],
    socket_name: str,
) -> Managed:
    try:
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / kind).mkdir(parents=True)
        for filename, text in files.items():
            (prefix / filename).write_text(text)
        nginx = [_nginx(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
        script = f"{shlex.join(app_argv)} & exec {shlex.join(nginx)}"
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    return start_peer(
        name,
        ["/bin/sh", "-c", script],
        port=cfg.port,
        env={"SIMLAB_BACKEND_PORT": str(cfg.backend_port)},
        prefix=prefix,
        wait_for=prefix / socket_name,
        preexec=cfg.preexec,
    )


def start_nginx_php_fpm(cfg: PeerConfig) -> Managed:
    # A missing runtime is reported before anything is made.
    _nginx()
    _php_fpm()
    prefix = temp_prefix("nginx-php-fpm")
    backlog = _backlog(cfg)
    files = {
        "php-fpm.conf": fpm_config(prefix, cfg.processes, backlog, cfg.backend_port),
        "nginx.conf": nginx_config(prefix, cfg.port, backlog, _fastcgi(prefix)),
    }
    return _start(
        "nginx-php-fpm",
        cfg,
        prefix=prefix,
        app_argv=fpm_argv(prefix),
        files=files,
        socket_name="php-fpm.sock",
    )


def start_nginx_uwsgi(cfg: PeerConfig) -> Managed:
    _nginx()
    prefix = temp_prefix("nginx-uwsgi")
    backlog = _backlog(cfg)
    try:
        argv = uwsgi_argv(prefix, cfg.processes, cfg.workers, backlog)
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    files = {"nginx.conf": nginx_config(prefix, cfg.port, backlog, _uwsgi(prefix))}
    return _start(
        "nginx-uwsgi", cfg, prefix=prefix, app_argv=argv, files=files, socket_name="uwsgi.sock"
    )


def php_fpm_version() -> str:
    return version_line([_php_fpm(), "-v"])


def uwsgi_version() -> str:
    argv = uwsgi_argv(Path("/nonexistent"), 1, 1, 1)  # checks the Python plugin too
    # Its plugin embeds the system's Python (the lab's packages come from the venv).
    embedded = version_line(["/usr/bin/python3", "--version"])
    return f"uWSGI {version_line([argv[0], '--version'])} ({embedded})"


def versions(peer: str) -> dict[str, str]:
    out = {"nginx": version_line([_nginx(), "-v"])}
    if peer == "nginx-php-fpm":
        out["php-fpm"] = php_fpm_version()
    else:
        out["uwsgi"] = uwsgi_version()
    return out
