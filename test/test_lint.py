"""The code is lint-clean: `ruff check src bench test` (pyflakes + pycodestyle errors, line length
120, config in ruff.toml) reports nothing. ruff is installed into the venv by scripts/setup.sh."""
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_reports_no_findings():
    ruff = os.path.join(os.path.dirname(sys.executable), 'ruff')
    assert os.path.exists(ruff), (f'ruff is not installed next to {sys.executable}; '
                                  're-run scripts/setup.sh (it installs requirements-core.txt)')
    out = subprocess.run([ruff, 'check', '--no-cache', 'src', 'bench', 'test'], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f'ruff check src bench test failed:\n{out.stdout}{out.stderr}'
