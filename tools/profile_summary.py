"""Summarize a py-spy raw (collapsed-stack) profile: the frames with the most samples, own and
inclusive, as percentages. Usage: python tools/profile_summary.py PROFILE.txt [N]"""

from __future__ import annotations

import collections
import sys
from pathlib import Path


def main(path: str, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.split(":")[0] for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    print(f"{total} samples")
    for name, counter in (("own", own), ("inclusive", inclusive)):
        for frame, n in counter.most_common(top):
            print(f"  {name:9} {100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 25)
