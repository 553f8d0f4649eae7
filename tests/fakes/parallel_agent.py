"""A fake agent for parallel runs: the experiment id decides what it changes.

PARALLEL_MODE=spread: set A, B or C (by id % 3) to its optimum (1, 2, 3): changes in
different lines, so rebasing one onto another's keep applies cleanly.
PARALLEL_MODE=clash: set A to 1 or 2 (by id % 2): both beat A = 10, and conflict.
It copies the brief's in-flight experiments to MARK_DIR/running-<id>.json.
"""

import json
import os
import re
import time
from pathlib import Path

exp = int(os.environ["OVERNIGHT_EXPERIMENT_ID"])
brief = json.loads(Path(os.environ["OVERNIGHT_BRIEF"]).read_text())
Path(os.environ["MARK_DIR"], f"running-{exp}.json").write_text(json.dumps(brief["running"]))
time.sleep(float(os.environ.get("AGENT_SLEEP", "0")))
if os.environ.get("PARALLEL_MODE", "spread") == "spread":
    name, value = "ABC"[exp % 3], "123"[exp % 3]
else:
    name, value = "A", str(1 + exp % 2)
source = Path("train.py").read_text()
Path("train.py").write_text(re.sub(rf"^{name} = .*$", f"{name} = {value}", source, flags=re.M))
print(f"Hypothesis: set {name} to {value}")
