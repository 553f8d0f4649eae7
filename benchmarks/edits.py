"""The closest-lines search for a SEARCH that matches nothing: the bounded one against the one it replaced.

When a SEARCH block misses, the model is shown the lines of the file most like it. That
search used to compare every window of the file with the whole SEARCH, character by
character (difflib's quick_ratio over the joined text): for a 300-line SEARCH in a
5,000-line file, 4,701 windows of ~18,000 characters each. Now each window is scored in
one pass by the lines and words it shares with the SEARCH, and only the best 8 windows
are compared closely (overnight.agents.edits.closest).

Both run here, in the same process, on the same file: the ratio holds on a busy machine.
The old search is reproduced below as it was, to measure it.

    python benchmarks/edits.py               # --lines 5000 --search 300
"""

from __future__ import annotations

import argparse
import difflib
import random
import time

from overnight.agents.edits import Block, EditError, apply_block, closest


def old_closest(content: list[str], search: list[str]) -> int:
    """The search as it was: every window, quick_ratio over its joined text."""
    n = max(1, len(search))
    target = "".join(search)
    best, best_at = -1.0, 0
    for i in range(max(1, len(content) - n + 1)):
        ratio = difflib.SequenceMatcher(None, "".join(content[i : i + n]), target).quick_ratio()
        if ratio > best:
            best, best_at = ratio, i
    return best_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=5000, help="lines of the file")
    parser.add_argument("--search", type=int, default=300, help="lines of the SEARCH that misses")
    args = parser.parse_args()
    rng = random.Random(0)
    names = [f"layer_{k}" for k in range(60)]
    lines = [
        f"    {rng.choice(names)}.weight[{i % 64}] = init(scale={rng.random():.4f}, step={i})  # {i}\n"
        for i in range(args.lines)
    ]
    start = args.lines * 2 // 5
    search = lines[start : start + args.search]
    search[len(search) // 2] = search[len(search) // 2].replace("init(", "init_(")  # one line differs

    began = time.perf_counter()
    new_at = closest(lines, search)
    new_s = time.perf_counter() - began
    began = time.perf_counter()
    try:
        apply_block("".join(lines), Block(1, "big.py", "".join(search), "x\n"))
    except EditError as err:
        message = str(err)
    message_s = time.perf_counter() - began
    began = time.perf_counter()
    old_at = old_closest(lines, search)
    old_s = time.perf_counter() - began

    print(
        f"a {args.search}-line SEARCH that misses in a {args.lines}-line file (its closest lines start at {start + 1})"
    )
    print(f"  old search: {old_s:8.3f} s  found line {old_at + 1}")
    print(f"  new search: {new_s:8.3f} s  found line {new_at + 1}  ({old_s / new_s:,.0f}x faster)")
    print(f"  the whole miss, message included: {message_s:.3f} s, {len(message):,} characters")


if __name__ == "__main__":
    main()
