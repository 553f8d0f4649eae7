"""What machine an experiment ran on (recorded with every experiment)."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        proc = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout.strip()
    return platform.processor() or platform.machine()


def _gpu_models() -> str:
    """GPU names from nvidia-smi, when there is one; empty otherwise."""
    if not shutil.which("nvidia-smi"):
        return ""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    names = [n.strip() for n in proc.stdout.splitlines() if n.strip()] if proc.returncode == 0 else []
    if not names:
        return ""
    return ", ".join(f"{names.count(n)}x {n}" for n in dict.fromkeys(names))


@functools.cache
def describe() -> dict[str, str]:
    """hostname, os, cpu (model and count), gpu (models, or empty). Computed once per process."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": f"{_cpu_model()} ({os.cpu_count()} cores)",
        "gpu": _gpu_models(),
        "python": platform.python_version(),
    }
