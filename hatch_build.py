"""Build hook: compile coralx's byte-plane loops (``coralx/store/_kernels.c``) into a shared
library that ``coralx/store/kernels.py`` loads with ctypes.

The library has no Python API, so only a C compiler is needed, not Python's headers. Without
one (or if the compile fails) the install goes on, says so, and coralx uses its numpy code for
the same loops: slower, the same bytes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("coralx") / "store" / "_kernels.c"
LIBRARY = Path("coralx") / "store" / "_kernels.so"


def compile_kernels(root: Path) -> Path | None:
    """Compile the kernels next to their source; the library's path, or None."""
    source, target = root / SOURCE, root / LIBRARY
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    cmd = [*compiler, "-O3", "-fPIC", "-shared", "-o", str(tmp), str(source)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        print(
            f"coralx: could not compile {SOURCE} ({detail}); installing without it "
            "(weights are encoded and decoded with numpy, more slowly)",
            file=sys.stderr,
        )
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, target)
    return target


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = compile_kernels(Path(self.root))
        if built is None or version == "editable":
            return  # an editable install finds the library beside its source
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["force_include"][str(built)] = str(LIBRARY)
