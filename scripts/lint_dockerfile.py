"""Hadolint-style checks for the Dockerfile, by script (no Docker engine needed).

`python scripts/lint_dockerfile.py [Dockerfile]` prints one line per problem; exit 1 if any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

BUILD_TOOLS = ("build-essential", "gcc", "g++", "make ", "-dev ", "-dev\n", "git ")


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuation lines joined."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    return out


def lint(text: str) -> list[str]:
    problems = []
    items = instructions(text)
    stages = [i for i, (_, word, _) in enumerate(items) if word == "FROM"]
    if not stages:
        return ["no FROM instruction"]
    final = items[stages[-1] :]
    for n, word, args in items:
        if word == "FROM":
            image = args.split()[0]
            if ":" not in image or image.endswith(":latest"):
                problems.append(f"{n}: DL3006/DL3007 pin the base image tag ({image})")
        if word == "ADD" and not re.search(r"https?://", args):
            problems.append(f"{n}: DL3020 use COPY instead of ADD for local files")
        if word == "RUN":
            if "apt-get install" in args:
                if "--no-install-recommends" not in args:
                    problems.append(f"{n}: DL3015 apt-get install without --no-install-recommends")
                if "apt-get update" not in args:
                    problems.append(f"{n}: DL3009 apt-get install without update in the same RUN")
                if "rm -rf /var/lib/apt/lists" not in args:
                    problems.append(f"{n}: DL3009 remove /var/lib/apt/lists in the same RUN")
            if (
                re.search(r"\bpip3? install\b", args)
                and "--no-cache-dir" not in args
                and "PIP_NO_CACHE_DIR" not in text
            ):
                problems.append(f"{n}: DL3042 pip install without --no-cache-dir")
            if re.search(r"\bsudo\b", args):
                problems.append(f"{n}: DL3004 do not use sudo")
        if word == "WORKDIR" and not args.startswith("/"):
            problems.append(f"{n}: DL3000 use an absolute WORKDIR")
        if word in ("CMD", "ENTRYPOINT") and not args.startswith("["):
            problems.append(f"{n}: DL3025 use the JSON form for {word}")
    users = [args for _, word, args in final if word == "USER"]
    if not users:
        problems.append("final stage: DL3002 no USER (runs as root)")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append("final stage: DL3002 last USER is root")
    if not any(word == "HEALTHCHECK" for _, word, _ in final):
        problems.append("final stage: no HEALTHCHECK")
    for n, word, args in final:
        if word == "RUN" and "apt-get install" in args:
            for tool in BUILD_TOOLS:
                if tool in args + "\n":
                    problems.append(f"{n}: build tool {tool.strip()!r} in the final stage")
    return problems


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "Dockerfile")
    problems = lint(path.read_text())
    for p in problems:
        print(f"{path}:{p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
