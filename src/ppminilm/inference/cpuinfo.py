"""What the CPU offers inference engines: model name and the ISA extensions that decide speed.

Read from ``/proc/cpuinfo`` (Linux); elsewhere the model comes from :mod:`platform` and the flags
are unknown (empty). The flags that matter here: AVX2 and AVX-512 (FP32 GEMMs), VNNI (INT8 dot
products: ``avx512_vnni`` or ``avx_vnni``), AVX-512 BF16 and AMX (bfloat16 / INT8 tile units).
"""

from __future__ import annotations

import platform
from pathlib import Path

#: Flag groups reported in bench headers and results: label -> cpuinfo flags (any present).
ISA_GROUPS = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "BF16": ("avx512_bf16",),
    "AMX": ("amx_tile", "amx_bf16", "amx_int8"),
}
CPUINFO = Path("/proc/cpuinfo")


def _field(name: str, path: Path = CPUINFO) -> str:
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model(path: Path = CPUINFO) -> str:
    """The CPU model name (``model name`` of the first processor)."""
    return _field("model name", path) or platform.processor() or platform.machine()


def isa_flags(path: Path = CPUINFO) -> dict[str, bool]:
    """Which of :data:`ISA_GROUPS` the CPU has (all False when the flags cannot be read)."""
    flags = set(_field("flags", path).split())
    return {label: any(f in flags for f in names) for label, names in ISA_GROUPS.items()}


def isa_summary(path: Path = CPUINFO) -> str:
    """One line: ``AVX2 yes, AVX-512 yes, VNNI yes, BF16 yes, AMX no``."""
    return ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in isa_flags(path).items())
