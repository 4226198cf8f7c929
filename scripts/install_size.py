"""How much disk ``pip install -e .`` takes: a fresh virtual environment, the install, and
the largest packages in it.

    python scripts/install_size.py                  # as the README's first command installs
    python scripts/install_size.py --cpu-torch      # PyTorch's CPU-only build first (needs its index)

Prints one JSON object: the environment's size and its ten largest packages, in MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def megabytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) // 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-torch", action="store_true", help=f"install torch and torchvision from {CPU_INDEX}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        if args.cpu_torch:
            subprocess.run([*pip, "torch", "torchvision", "--index-url", CPU_INDEX], check=True)
        subprocess.run([*pip, "-e", str(ROOT)], check=True)
        site = next((venv / "lib").glob("python*/site-packages"))
        sizes = sorted(((megabytes(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:10]
        print(json.dumps({"venv_mb": megabytes(venv), "largest_mb": dict((name, mb) for mb, name in sizes)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
