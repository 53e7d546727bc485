"""The coralx demo: make a store in a temporary folder and show it, with the real CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def coralx(*args: str, cwd: Path) -> None:
    print(f"\n$ coralx {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "coralx", *args], cwd=cwd, check=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="coralx-demo-"))
    try:
        coralx("init", cwd=work)
        coralx("status", cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
