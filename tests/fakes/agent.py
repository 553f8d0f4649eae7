"""A scripted agent for tests: does what FAKE_PLAN lists for this experiment.

FAKE_PLAN names a JSON file: {"<experiment id>" or "*": [[action, args...], ...]}.
Actions (paths relative to the task folder, the agent's cwd):
  ["set", file, NAME, value]   rewrite the line `NAME = ...` of file
  ["write", file, text]        write a file
  ["delete", file]             delete a file
  ["print", text]              print a line (e.g. "Hypothesis: ...")
  ["sleep", seconds]           sleep
  ["exit", code]               exit with code
  ["shell", command]           run a shell command
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

plan = json.loads(Path(os.environ["FAKE_PLAN"]).read_text())
steps = plan.get(os.environ["OVERNIGHT_EXPERIMENT_ID"], plan.get("*", []))
for action, *args in steps:
    if action == "set":
        path, name, value = Path(args[0]), args[1], args[2]
        text = re.sub(rf"^{name} = .*$", f"{name} = {value}", path.read_text(), flags=re.M)
        path.write_text(text)
    elif action == "write":
        Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(args[0]).write_text(args[1])
    elif action == "delete":
        Path(args[0]).unlink()
    elif action == "print":
        print(args[0], flush=True)
    elif action == "sleep":
        time.sleep(args[0])
    elif action == "exit":
        sys.exit(args[0])
    elif action == "shell":
        subprocess.run(args[0], shell=True, check=True)
    else:
        sys.exit(f"fake agent: unknown action {action!r}")
