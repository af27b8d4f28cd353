"""The compiled wheel: mypyc turns headway's decision path into C extension modules.

Off by default: `HATCH_BUILD_HOOK_ENABLE_CUSTOM=1 pip wheel packages/core` builds it (release wheels
are built so); the sdist, a source install and the editable development install stay pure Python. The
compiled modules are the same source, so both behave the same, and `make test` runs the suite on each.
The modules are listed in pyproject.toml (`modules`): the ones every event passes through.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class MypycBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        modules = self.config.get("modules", [])
        if not modules:
            raise ValueError("tool.hatch.build.targets.wheel.hooks.custom.modules lists no module to compile")
        # Compiled in a copy: mypyc writes its C files and extension modules next to the sources, and a
        # stray .so in src/ would shadow the .py a developer edits.
        self._tmp = Path(tempfile.mkdtemp(prefix="headway-mypyc-"))
        package = Path(self.root, "src", "headway")
        shutil.copytree(package, self._tmp / "headway", ignore=shutil.ignore_patterns("__pycache__"))
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *(f"headway/{m}.py" for m in modules)],
            cwd=self._tmp,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mypyc failed:\n{done.stdout}\n{done.stderr}")
        # The extension modules, and mypyc's shared runtime library beside the package.
        built = [
            p for d in (self._tmp, self._tmp / "headway") for p in d.iterdir() if p.suffix in (".so", ".pyd")
        ]
        for path in built:
            build_data["force_include"][str(path)] = str(path.relative_to(self._tmp))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
