"""Running a command (overnight.process): exit codes, output, timeouts and process trees, memory, interrupts."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from overnight.process import run_command
from overnight.process.tree import _proportional_set, kill_token_holders
from overnight.records import RunResult

PY = sys.executable


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_dead(pid: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _dead(pid):
            return True
        time.sleep(0.05)
    return False


def test_exit_code_output_and_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "1.log"
    result = run_command("echo hello; echo oops >&2; exit 3", cwd=tmp_path, log_path=log, timeout_s=10, label="run")
    assert result.exit_code == 3 and not result.timed_out and not result.ok
    assert "hello" in result.output and "oops" in result.output
    assert log.read_text().startswith("### overnight: run: echo hello")


def test_output_is_only_this_commands_part_of_the_log(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    run_command("echo first", cwd=tmp_path, log_path=log, timeout_s=10)
    second = run_command("echo second", cwd=tmp_path, log_path=log, timeout_s=10)
    assert second.output == "second\n"
    assert log.read_text() == "first\nsecond\n"


def test_environment_and_cwd(tmp_path: Path) -> None:
    result = run_command(
        "pwd; echo $FOO", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=10, env={**os.environ, "FOO": "bar"}
    )
    assert result.output.split() == [str(tmp_path), "bar"]


GRANDCHILDREN_IGNORING_TERM = f"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for i in range(2):
    p = subprocess.Popen([{PY!r}, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open(os.path.join(sys.argv[1], f"child-{{i}}"), "w").write(str(p.pid))
open(os.path.join(sys.argv[1], "parent"), "w").write(str(os.getpid()))
time.sleep(600)
"""


def test_timeout_kills_a_tree_that_ignores_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "tree.py"
    script.write_text(GRANDCHILDREN_IGNORING_TERM)
    started = time.monotonic()
    # 6 s: time for the tree to start and note its pids, even on a busy machine; then SIGTERM, ignored, SIGKILL
    result = run_command(f"{PY} {script} {tmp_path}", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=6, grace_s=0.5)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 500  # ended by the timeout, not by the tree's own 600 s
    pids = [int((tmp_path / n).read_text()) for n in ("parent", "child-0", "child-1")]
    assert all(_wait_dead(pid) for pid in pids)


DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(os.path.join(sys.argv[1], "daemon.tmp"), "w").write(str(os.getpid()))
        os.rename(os.path.join(sys.argv[1], "daemon.tmp"), os.path.join(sys.argv[1], "daemon"))
        time.sleep(600)
    os._exit(0)
while not os.path.exists(os.path.join(sys.argv[1], "daemon")):  # the daemon is up: end, leaving it behind
    time.sleep(0.01)
print("done")
"""


def test_a_daemon_that_left_the_group_is_killed_when_the_command_ends(tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    result = run_command(f"{PY} {script} {tmp_path}", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=10)
    assert result.exit_code == 0
    pid = int((tmp_path / "daemon").read_text())
    assert _wait_dead(pid)


def test_peak_memory_of_the_tree(tmp_path: Path) -> None:
    code = "x = bytearray(150 * 1024 * 1024); import time; time.sleep(0.6)"
    result = run_command(f"{PY} -c '{code}'", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=10)
    assert result.exit_code == 0, result
    assert 150 <= result.peak_memory_mb < 400, result


def test_stop_event_interrupts(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    result = run_command("sleep 30", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=60, stop=stop, grace_s=1)
    assert result.interrupted and not result.timed_out and result.exit_code is None
    assert result.duration_s < 25  # stopped, not the 30 s sleep run out


def test_kill_token_holders_finds_processes_by_prefix(tmp_path: Path) -> None:
    import subprocess

    env = {**os.environ, "OVERNIGHT_PROCESS_TOKEN": "run42:7:run"}
    proc = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        assert kill_token_holders("run41:") == 0
        assert kill_token_holders("run42:") == 1
        assert proc.wait(timeout=5) == -9
    finally:
        proc.kill()


def test_the_controllers_own_memory_is_not_counted(tmp_path: Path) -> None:
    ballast = bytearray(400 * 1024 * 1024)  # a big controller: Linux folds a parent's peak into a child's at exec
    result = run_command(f"{PY} -c 'import time; time.sleep(0.4)'", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=10)
    assert len(ballast) and result.peak_memory_mb < 100, result


SECRET_IN_PIECES = """
import os, sys, time
for piece in ("tok-", "abc", "def", "gh-xyz", " shown\\n"):
    sys.stdout.write(piece); sys.stdout.flush(); time.sleep(0.15)
while not os.path.exists(sys.argv[1]):  # the test saw the log while this still ran
    time.sleep(0.01)
"""


def test_a_secret_printed_in_pieces_never_reaches_the_log(tmp_path: Path, monkeypatch) -> None:
    secret = "tok-abcdefgh-xyz"
    monkeypatch.setenv("MY_TOKEN", secret)
    script, log = tmp_path / "leak.py", tmp_path / "l"
    script.write_text(SECRET_IN_PIECES)
    result: list[RunResult] = []

    go = tmp_path / "go"

    def run() -> None:
        result.append(run_command(f"{PY} {script} {go}", cwd=tmp_path, log_path=log, timeout_s=120))

    thread = threading.Thread(target=run)
    thread.start()
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    while b"shown" not in (seen or [b""])[-1] and time.monotonic() < deadline:  # a live view of the log, meanwhile
        seen.append(log.read_bytes() if log.exists() else b"")
        time.sleep(0.01)
    running = thread.is_alive()
    go.touch()  # now the command may end
    thread.join(60)
    assert running and seen[-1] == b"[redacted] shown\n", "on disk, redacted, while it still ran"
    assert not [s for s in seen if secret.encode() in s]
    assert log.read_text() == "[redacted] shown\n" and result[0].output == "[redacted] shown\n"


FORKED_WORKERS = """
import os, sys, time
size = int(sys.argv[1]) << 20
block = bytearray(size)
block[::4096] = b"\\1" * len(range(0, size, 4096))  # every page resident
workers = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:  # a DataLoader-like worker: shares the parent's pages, unless it writes them
        if sys.argv[2] == "write":
            block[::4096] = b"\\2" * len(range(0, size, 4096))
        time.sleep(1.5)
        os._exit(0)
    workers.append(pid)
for pid in workers:
    os.waitpid(pid, 0)
"""


def test_forked_workers_sharing_their_parents_memory_count_it_once(tmp_path: Path) -> None:
    script = tmp_path / "workers.py"
    script.write_text(FORKED_WORKERS)
    run = f"{PY} {script} 150"
    shared = run_command(f"{run} read", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=20, memory_mb=300)
    assert shared.exit_code == 0 and not shared.over_memory, shared
    copied = run_command(f"{run} write", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=20, memory_mb=300)
    assert copied.over_memory and copied.exit_code is None, copied


def test_a_run_that_allocates_past_its_limit_is_killed(tmp_path: Path) -> None:
    code = "x = bytearray(400 * 1024 * 1024); import time; time.sleep(60)"
    result = run_command(f"{PY} -c '{code}'", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=120, memory_mb=150)
    assert result.over_memory and result.exit_code is None and result.duration_s < 50, result  # killed, not ended


def test_memory_held_is_the_proportional_set_else_the_resident_set() -> None:
    me = psutil.Process()
    assert 0 < _proportional_set(me) <= me.memory_info().rss * 1.05  # Pss: shared pages split, never more than RSS

    class Unreadable:  # no /proc/<pid>/smaps_rollup (not Linux, an old kernel, no permission)
        pid = -1

        def memory_info(self) -> SimpleNamespace:
            return SimpleNamespace(rss=12345)

    assert _proportional_set(Unreadable()) == 12345  # type: ignore[arg-type]


def test_contention_is_the_share_of_the_machine_others_used(tmp_path: Path) -> None:
    short = run_command("true", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=10)
    assert short.contention is None  # a short run says nothing about bursts of load
    hog = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        busy = run_command(f"{PY} -c 'import time; time.sleep(1.5)'", cwd=tmp_path, log_path=tmp_path / "l",
                           timeout_s=30)  # fmt: skip
    finally:
        hog.kill()
        hog.wait()
    # A hog on one core: about 1 / cores of the machine, more if others are busy too
    assert busy.contention is not None and busy.contention >= 0.8 / (os.cpu_count() or 1)


def test_what_the_harness_reads_comes_from_the_pipes_not_the_log_files(tmp_path: Path) -> None:
    # A command (or a process it left behind) can write its own log file: a metric read back
    # from there could be forged. The file is a copy; the output is what the pipe delivered.
    log = tmp_path / "run.log"
    forge = f"echo 'score: 1.0'; echo 'score: 0.000003' >> '{log}'; echo 'done'"
    result = run_command(forge, cwd=tmp_path, log_path=log, timeout_s=60)
    assert result.output.split() == ["score:", "1.0", "done"]
    assert "0.000003" in log.read_text()  # in the file, where nothing reads it back
    out = tmp_path / "run.out"
    split = f"echo 'answer' ; echo 'oops' >&2; echo 'forged' >> '{out}'; echo 'forged' >> '{log}'"
    result = run_command(split, cwd=tmp_path, log_path=log, timeout_s=60, stdout_path=out)
    assert result.output.split() == ["answer"] and result.stderr.split() == ["oops"]


def test_a_command_sees_its_working_folder_as_pwd(tmp_path: Path) -> None:
    # Tools such as opencode take their folder from $PWD, not from getcwd(): an inherited PWD
    # would point them at wherever overnight was started (the user's own checkout).
    inner = tmp_path / "worktree"
    inner.mkdir()
    env = {**os.environ, "PWD": str(tmp_path)}
    result = run_command('echo "$PWD"', cwd=inner, log_path=tmp_path / "pwd.log", timeout_s=60, env=env)
    assert result.output.strip() == str(inner)
    argv = [sys.executable, "-c", "import os; print(os.environ['PWD'])"]
    result = run_command(argv, cwd=inner, log_path=tmp_path / "pwd2.log", timeout_s=60, env=env)
    assert result.output.strip() == str(inner)


ESCAPE = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        for fd in (0, 1, 2):
            os.close(fd)
        os.execve("/bin/sleep", ["sleep", "600"], {})  # no environment: no token to find it by
    os._exit(0)
time.sleep(0.5)
print("score: 1")
"""


def test_a_process_that_detaches_and_drops_its_environment_does_not_outlive_the_run(tmp_path: Path) -> None:
    from overnight.process.cgroup import Cgroup

    probe = Cgroup.create("probe-" + os.urandom(4).hex())
    if probe is None:
        pytest.skip("this machine gives overnight no cgroup (not root, no delegated subtree)")
    probe.close()
    mark = tmp_path / "escaped.pid"
    argv = [sys.executable, "-c", ESCAPE, str(mark)]
    result = run_command(argv, cwd=tmp_path, log_path=tmp_path / "escape.log", timeout_s=60)
    assert result.exit_code == 0 and result.containment == "cgroup"
    escaped = int(mark.read_text())
    try:
        gone = psutil.wait_procs([psutil.Process(escaped)], timeout=10)[0]
    except psutil.NoSuchProcess:
        gone = [escaped]
    assert gone, "the escaped process outlived the run"


def test_the_cgroup_counts_what_a_command_leaves_in_dev_shm(tmp_path: Path) -> None:
    from overnight.process.cgroup import Cgroup

    probe = Cgroup.create("probe-" + os.urandom(4).hex())
    if probe is None or probe.memory() is None:
        if probe:
            probe.close()
        pytest.skip("no cgroup with the memory controller here")
    probe.close()
    name = f"/dev/shm/overnight-test-{os.getpid()}"
    write = f"import time; open({name!r}, 'wb').write(b'x' * (300 << 20)); time.sleep(30)"
    try:
        result = run_command([sys.executable, "-c", write], cwd=tmp_path, log_path=tmp_path / "shm.log",
                             timeout_s=60, memory_mb=200)  # fmt: skip
        assert result.over_memory
    finally:
        Path(name).unlink(missing_ok=True)


READ_PARENT = """
import os, subprocess, sys
sys.path.insert(0, sys.argv[2])
if sys.argv[1] == "conceal":
    from overnight import secrets
    assert secrets.conceal()
os.environ["PROBE_API_KEY"] = "sk-probe"
reader = "cat /proc/$PPID/environ > /dev/null 2>&1 && echo read || echo denied"  # $PPID: this process
print(subprocess.run(["sh", "-c", reader], capture_output=True, text=True).stdout.strip())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl are Linux's")
def test_the_controllers_environment_is_not_readable_by_the_commands_it_starts(tmp_path: Path) -> None:
    # Experiments run as the controller's user; as root they could read anything, so the check
    # runs as an ordinary user (nobody) when the tests run as root.
    import overnight

    source = str(Path(overnight.__file__).parent.parent)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to become an ordinary user")
        prefix = [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"]
    said = {
        how: subprocess.run([*prefix, sys.executable, "-c", READ_PARENT, how, source], capture_output=True,
                            text=True, timeout=60, cwd="/").stdout.strip()
        for how in ("plain", "conceal")
    }  # fmt: skip
    assert said == {"plain": "read", "conceal": "denied"}


@pytest.mark.parametrize("cgroup", [True, False], ids=["in-a-cgroup", "without-a-cgroup"])
def test_the_tree_is_watched_with_or_without_a_cgroup(tmp_path: Path, monkeypatch, cgroup: bool) -> None:
    # Members come from the command's cgroup when it has one, else from a look at every process (shared
    # by the commands running at once): either way a child's memory counts and a forked worker's is limited.
    from overnight.process import cgroup as cgroups

    if not cgroup:
        monkeypatch.setattr(cgroups, "_refused", True)
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'x = bytearray(150 << 20); import time; time.sleep(3)'])"
    result = run_command(f'{PY} -c "{code}"', cwd=tmp_path, log_path=tmp_path / "l", timeout_s=20)
    assert result.exit_code == 0 and 150 <= result.peak_memory_mb < 400, result
    assert cgroup or result.containment == "tree"
    script = tmp_path / "workers.py"
    script.write_text(FORKED_WORKERS)
    copied = run_command(f"{PY} {script} 150 write", cwd=tmp_path, log_path=tmp_path / "l", timeout_s=20, memory_mb=300)
    assert copied.over_memory and copied.exit_code is None, copied


LEAVE_CGROUP = """
import os, sys, time
if os.fork():
    while not os.path.exists(sys.argv[1]):  # it is out: end, leaving it behind
        time.sleep(0.01)
    sys.exit(0)
os.setsid()
if os.fork():
    os._exit(0)
own = open("/proc/self/cgroup").read().split("0::", 1)[1].strip()
mount = next(line.split()[4] for line in open("/proc/self/mountinfo") if " - cgroup2 " in line)
with open(os.path.join(mount + os.path.dirname(own), "cgroup.procs"), "w") as procs:  # out of its cgroup
    procs.write(str(os.getpid()))
open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cgroups and /proc are Linux's")
def test_a_process_that_moves_out_of_its_cgroup_is_found_by_its_token(tmp_path: Path) -> None:
    # Only processes born since the command started are read for its token (overnight.process.births):
    # one that left its cgroup, its group and its session is still among them.
    from overnight.process.cgroup import Cgroup

    probe = Cgroup.create("probe-" + os.urandom(4).hex())
    if probe is None:
        pytest.skip("this machine gives overnight no cgroup (not root, no delegated subtree)")
    probe.close()
    mark = tmp_path / "left.pid"
    result = run_command([sys.executable, "-c", LEAVE_CGROUP, str(mark)], cwd=tmp_path, log_path=tmp_path / "l",
                         timeout_s=60)  # fmt: skip
    assert result.exit_code == 0 and mark.exists(), result
    left = int(mark.read_text())
    try:
        assert _wait_dead(left, 30), "the process that left its cgroup outlived the run"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(left, 9)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_births_name_every_process_started_since_or_cannot_tell(monkeypatch) -> None:
    from overnight.process import births
    from overnight.process.tree import TOKEN_VAR, _token_holders

    since = births.Births.since()
    if since is None:
        pytest.skip("/proc here is not this process's pid namespace's")
    env = {**os.environ, TOKEN_VAR: "births-probe"}
    procs = [subprocess.Popen(["sleep", "60"], env=env, start_new_session=True) for _ in range(3)]
    try:
        deadline = time.monotonic() + 60
        while len(_token_holders("births-probe")) < 3 and time.monotonic() < deadline:  # until each has exec'd
            time.sleep(0.01)
        born = since.born()
        assert born is not None and {p.pid for p in procs} <= set(born)
        assert sorted(p.pid for p in _token_holders("births-probe", births=since)) == sorted(p.pid for p in procs)
        # Too many forks since (the pid sequence may have come round): it cannot tell, and every process is read.
        real = births._counters
        monkeypatch.setattr(births, "_counters", lambda: (lambda c: (c[0] + since.pid_max, c[1], c[2]))(real()))
        assert since.born() is None
        assert len(_token_holders("births-probe", births=since)) == 3
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
