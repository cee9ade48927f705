"""The JVM peers: embedded Tomcat 10 on its NIO connector, and a plain thread per connection.

- ``tomcat-nio`` (``java/TomcatPeer.java``): a servlet in embedded Tomcat;
  the NIO poller holds every connection and a pool of at most ``maxThreads``
  (= workers) threads runs the requests; ``acceptCount`` = backlog. Resembles
  ``reactor-pool``.
- ``java-threads`` (``java/ThreadPeer.java``): a ``ServerSocket`` and one
  platform thread per connection, blocking reads; resembles
  ``thread-per-connection``. ``--stack-kib`` sets its threads' ``-Xss``.

Both share ``java/Work.java`` (the burn on the thread's own CPU clock, the
backend calls on a per-thread connection). The sources are compiled with
javac on first use (the servlet against Debian's Tomcat jars) and cached
(``build.py``); ``java/MemUnits.java`` is the memory units' program.
One JVM each: ``--processes`` must be 1. The JVM runs with its defaults
(heap, GC, -Xss), as a service started without tuning would.
"""

from __future__ import annotations

import os
from pathlib import Path

from simlab.real.peers.build import (
    MissingRuntime,
    PeerConfig,
    cached_build,
    find_program,
    run_build,
    start_peer,
    temp_prefix,
    version_line,
)
from simlab.real.processes import Managed

__all__ = ["classes", "java_argv", "start_java_threads", "start_tomcat_nio", "versions"]

JAVA_DIR = Path(__file__).parent / "java"
JDK_PACKAGES = ("default-jdk-headless",)
TOMCAT_PACKAGES = ("libtomcat10-java",)
JARS = Path("/usr/share/java")
TOMCAT_JARS = (
    "catalina",
    "coyote",
    "util",
    "util-scan",
    "juli",
    "api",
    "servlet-api",
    "annotations-api",
    "jaspic-api",
    "jni",
    "el-api",
)
PLAIN_SOURCES = ("Work.java", "ThreadPeer.java", "MemUnits.java")


def _jdk(peer: str) -> tuple[str, str]:
    java = find_program(("java",), peer=peer, packages=JDK_PACKAGES)
    javac = find_program(("javac",), peer=peer, packages=JDK_PACKAGES)
    return java, javac


def tomcat_jars(peer: str = "tomcat-nio") -> list[Path]:
    jars = [JARS / f"tomcat10-{name}.jar" for name in TOMCAT_JARS]
    missing = [j for j in jars if not j.exists()]
    if missing:
        raise MissingRuntime(
            f"{peer}: {missing[0]} is not installed; install it with: "
            f"apt-get install {' '.join(TOMCAT_PACKAGES)}"
        )
    return jars


def classes(peer: str, *, tomcat: bool) -> Path:
    """The compiled classes for ``peer``, built once: with Tomcat (the servlet) or
    without (the thread-per-connection server and the memory units)."""
    _, javac = _jdk(peer)
    jars = tomcat_jars(peer) if tomcat else []
    names = ("Work.java", "TomcatPeer.java") if tomcat else PLAIN_SOURCES
    sources = [JAVA_DIR / name for name in names]
    # The key holds the compiler and the jars' real versions: an upgrade rebuilds.
    extra = version_line([javac, "-version"]) + ":".join(os.path.realpath(j) for j in jars)
    classpath = ":".join(str(j) for j in jars) or "."

    def build(out: Path) -> None:
        run_build([javac, "-d", str(out), "-cp", classpath, *map(str, sources)], cwd=out)

    return cached_build("java-tomcat" if tomcat else "java", sources, extra, build)


def java_argv(
    peer: str, main: str, *args: str, stack_kib: int = 0, tomcat: bool = False
) -> list[str]:
    """``java`` running ``main`` from the cached classes (and Tomcat's jars)."""
    java, _ = _jdk(peer)
    jars = [str(j) for j in tomcat_jars(peer)] if tomcat else []
    classpath = ":".join([str(classes(peer, tomcat=tomcat)), *jars])
    argv = [java]
    if stack_kib:
        argv.append(f"-Xss{stack_kib}k")
    return [*argv, "-cp", classpath, main, *args]


def _one_jvm(peer: str, cfg: PeerConfig) -> None:
    if cfg.processes != 1:
        raise ValueError(f"processes: {peer} runs in one JVM; --processes must be 1")


def _backlog(cfg: PeerConfig) -> str:
    return str(4096 if cfg.backlog is None else max(1, cfg.backlog))


def start_tomcat_nio(cfg: PeerConfig) -> Managed:
    _one_jvm("tomcat-nio", cfg)
    argv = java_argv("tomcat-nio", "TomcatPeer", stack_kib=cfg.stack_kib, tomcat=True)
    prefix = temp_prefix("tomcat-nio")  # Tomcat's base directory (its work/ folder)
    argv += [str(cfg.port), str(cfg.workers), _backlog(cfg), str(prefix)]
    env = {"SIMLAB_BACKEND_PORT": str(cfg.backend_port)}
    return start_peer(
        "tomcat-nio", argv, port=cfg.port, env=env, prefix=prefix, preexec=cfg.preexec
    )


def start_java_threads(cfg: PeerConfig) -> Managed:
    _one_jvm("java-threads", cfg)
    timeout_ms = str(round(cfg.request_timeout * 1000))
    argv = java_argv("java-threads", "ThreadPeer", stack_kib=cfg.stack_kib)
    argv += [str(cfg.port), _backlog(cfg), timeout_ms]
    env = {"SIMLAB_BACKEND_PORT": str(cfg.backend_port)}
    return start_peer("java-threads", argv, port=cfg.port, env=env, preexec=cfg.preexec)


def versions(peer: str) -> dict[str, str]:
    java, _ = _jdk(peer)
    out = {"java": version_line([java, "-version"])}
    if peer == "tomcat-nio":
        catalina = Path(os.path.realpath(tomcat_jars(peer)[0])).stem
        out["tomcat"] = catalina.removeprefix("tomcat10-catalina-")
    return out
