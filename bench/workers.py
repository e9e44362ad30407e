"""Real Celery worker processes for the scale benchmark: start, watch, measure, stop.

Each worker runs in its own session, so stopping it reaches the pool process it forks and nothing
else. Peak memory is read from ``/proc`` (VmHWM) while the processes still live.
"""

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STOP_SECONDS = 30


class WorkerFailed(RuntimeError):
    """A worker exited while the benchmark needed it; the message holds the end of its log."""


@dataclass
class Worker:
    name: str
    queues: str
    process: subprocess.Popen
    log: Path
    peaks_kb: dict[int, int] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return f"scale-{self.name}"

    def tail(self, size: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-size:] if self.log.exists() else "(no log)"


def start_worker(
    name: str, queues: str, log_dir: Path, env: dict[str, str], *, pool: str = "prefork", concurrency: int = 1
) -> Worker:
    """A real Celery worker on ``queues``, as docker-compose runs them (by default one prefork pool
    process; the outbound worker runs threads)."""
    log = log_dir / f"worker-{name}.log"
    command = [sys.executable, "-m", "celery", "-A", "controltower", "worker", f"--pool={pool}"]
    command += [f"--concurrency={concurrency}"]
    command += [f"--queues={queues}", f"--hostname=scale-{name}@%h", "--loglevel=WARNING"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with log.open("w") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Worker(name=name, queues=queues, process=process, log=log)


def check_alive(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is not None:
            raise WorkerFailed(f"worker {worker.name} exited ({worker.process.returncode}): {worker.tail()}")


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: the fields after it are safe.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _high_water_kb(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(line.split()[1]) if line else None


def record_peaks(worker: Worker) -> None:
    """Peak resident memory (VmHWM) of the worker and its pool processes, while they still live."""
    for pid in [worker.process.pid, *_descendants(worker.process.pid)]:
        peak = _high_water_kb(pid)
        if peak is not None:
            worker.peaks_kb[pid] = max(peak, worker.peaks_kb.get(pid, 0))


def peaks_mb(worker: Worker) -> str:
    """``main + pool`` peaks in MB, the main process first (it has the lowest pid)."""
    return " + ".join(f"{kb / 1024:.0f}" for _, kb in sorted(worker.peaks_kb.items()))


def stop_worker(worker: Worker) -> None:
    """Warm shutdown (finish the task at hand), then a kill of its own process group if it hangs."""
    if worker.process.poll() is None:
        record_peaks(worker)
        worker.process.terminate()
    try:
        worker.process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"  worker {worker.name} did not stop within {STOP_SECONDS}s: killed", flush=True)
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
