"""A tiny agent for the demo: nudge one coefficient of model.py at random.

overnight runs it in the experiment's worktree (at the current best) and reads the
`Hypothesis:` line. It reads the brief to make bigger moves early and smaller ones later.
"""

import json
import os
import random
import re
from pathlib import Path

brief = json.loads(Path(os.environ["OVERNIGHT_BRIEF"]).read_text())
rng = random.Random(brief["experiment_id"])
kept = sum(1 for e in brief["history"] if e["status"] == "keep")
scale = 1.0 / (1 + kept) ** 0.5

source = Path("model.py").read_text()
name = rng.choice("ABCD")
old = float(re.search(rf"^{name} = (.+)$", source, re.M).group(1))
new = round(old + rng.gauss(0, scale), 3)
Path("model.py").write_text(re.sub(rf"^{name} = .+$", f"{name} = {new}", source, flags=re.M))
print(f"Hypothesis: move {name} from {old:g} to {new:g}")
