"""The README's Python quickstart runs as written (in a fresh process, with the synthetic cache in a temp folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_quickstart_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README has no python code block"
    script = tmp_path / "quickstart.py"
    script.write_text("\n\n".join(blocks))
    # One intra-op thread: under pytest-xdist another worker shares the 2 cores, and oversubscribed torch threads
    # spin-wait (the script then runs ten times slower).
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "cache" / "lightning_hpml" / "synthetic").is_dir()
