"""The paddle-2.6 zlib trap is worked around by importing through ppminilm.compat.paddle."""

import subprocess
import sys
from pathlib import Path

import pytest

from ppminilm.compat.paddle import paddle

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration


def test_paddle_major_version_is_pinned():
    assert paddle.__version__.startswith("2.6."), "the stack is verified on paddle 2.6 only"


@pytest.mark.parametrize("module", ["ppminilm.compat.paddle", "ppminilm.modeling.saved"])
def test_zlib_usable_after_importing_paddle_through_package(module):
    # A fresh interpreter: import paddle via our module, then use zlib through gzip + a PNG.
    code = (
        f"import {module}, gzip, io, zlib\n"
        "data = b'x' * 100000\n"
        "assert zlib.decompress(zlib.compress(data)) == data\n"
        "buf = io.BytesIO(); gzip.GzipFile(fileobj=buf, mode='wb').write(data)\n"
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2]); plt.savefig(io.BytesIO(), format='png')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")
    src = Path(sys.modules["ppminilm.compat.paddle"].__file__).read_text(encoding="utf-8")
    assert src.index("\nimport zlib") < src.index("\nimport paddle")


def test_naive_import_order_still_crashes():
    """Control: the trap is real on the pinned paddle (so the guard above is needed)."""
    code = (
        "import paddle, io\n"
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2]); plt.savefig(io.BytesIO(), format='png')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, "paddle no longer breaks zlib; paddle_env's guard may go"
