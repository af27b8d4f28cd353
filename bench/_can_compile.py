"""Exit 0 when this interpreter can build C extensions (a C compiler and Python's headers), else 1.

Used by `make compiled`; plain Python so it runs before anything else is installed.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from pathlib import Path


def can_compile() -> bool:
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return shutil.which(compiler) is not None and headers.is_file()


if __name__ == "__main__":
    sys.exit(0 if can_compile() else 1)
