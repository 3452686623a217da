"""The paddle-2.6 zlib trap is worked around by importing through ppminilm.compat.paddle."""

import os
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


def test_paddle_starts_with_one_math_thread_and_set_cpu_threads_sets_them():
    # In a fresh interpreter (this one's count is whatever earlier tests set): paddle's CPU
    # kernels start on one OpenMP thread whatever the machine (the trap), and
    # set_cpu_threads gives them the process's CPUs, divided among processes sharing them.
    code = (
        "import ctypes, glob, os\n"
        "from ppminilm.compat.paddle import paddle, set_cpu_threads, available_cpus\n"
        "omp = ctypes.CDLL(glob.glob(os.path.join(paddle.__path__[0], 'libs', 'libiomp5.so'))[0])\n"
        "cpus = available_cpus()\n"
        "print(cpus, omp.omp_get_max_threads(), end=' ')\n"
        "print(set_cpu_threads(0), omp.omp_get_max_threads(), end=' ')\n"
        "print(set_cpu_threads(0, share=cpus), omp.omp_get_max_threads(), end=' ')\n"
        "print(set_cpu_threads(3), omp.omp_get_max_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    cpus, start, auto, auto_omp, shared, shared_omp, three, three_omp = map(int, out.stdout.split())
    assert start == 1
    assert auto == auto_omp == cpus and shared == shared_omp == 1 and three == three_omp == 3


def test_available_cpus_reads_the_cgroup_quota(tmp_path: Path, monkeypatch) -> None:
    from ppminilm.compat import paddle as compat_paddle

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert compat_paddle._cgroup_cpu_quota(v2) == (150000, 100000)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert compat_paddle._cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert compat_paddle._cgroup_cpu_quota(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    assert compat_paddle._cgroup_cpu_quota(v1) == (50000, 100000)
    assert compat_paddle._cgroup_cpu_quota(tmp_path / "none") is None
    # A 1.5-CPU limit on a node the affinity mask shows whole: 2 threads, not the node's count.
    monkeypatch.setattr(compat_paddle, "_cgroup_cpu_quota", lambda: (150000, 100000))
    monkeypatch.setattr(compat_paddle.os, "sched_getaffinity", lambda _pid: set(range(64)))
    assert compat_paddle.available_cpus() == 2
