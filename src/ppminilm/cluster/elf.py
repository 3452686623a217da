"""Just enough of the ELF format to tell what a shared object needs: class, machine, type,
``DT_NEEDED``, ``DT_SONAME``, ``DT_RPATH`` and ``DT_RUNPATH``. Standard library only, so the
library check (:mod:`ppminilm.cluster.doctor`) runs on a root file system it does not execute.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_DYN = 3
EM_X86_64 = 62
PT_DYNAMIC = 2
PT_LOAD = 1
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 14, 15, 29


class NotAnElfError(ValueError):
    """The file is not a (64-bit little-endian) ELF object this reader understands."""


@dataclass(frozen=True)
class ElfInfo:
    """What the dynamic loader reads of a shared object.

    Attributes:
        elf_class: 1 (32-bit) or 2 (64-bit).
        machine: ``e_machine`` (62 is x86-64).
        elf_type: ``e_type`` (3 is a shared object, ET_DYN).
        needed: ``DT_NEEDED`` names, in order.
        soname: ``DT_SONAME`` or empty.
        rpath: ``DT_RPATH`` entries.
        runpath: ``DT_RUNPATH`` entries.
    """

    elf_class: int
    machine: int
    elf_type: int
    needed: tuple[str, ...] = ()
    soname: str = ""
    rpath: tuple[str, ...] = field(default=())
    runpath: tuple[str, ...] = field(default=())

    @property
    def is_x86_64_shared_object(self) -> bool:
        return (
            self.elf_class == ELFCLASS64 and self.machine == EM_X86_64 and self.elf_type == ET_DYN
        )


def _vaddr_to_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int:
    for offset, start, size in loads:
        if start <= vaddr < start + size:
            return offset + vaddr - start
    raise NotAnElfError(f"address {vaddr:#x} is in no loadable segment")


def _cstring(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset : end if end >= 0 else len(data)].decode("utf-8", "replace")


def read_elf(path: Path) -> ElfInfo:
    """Read the dynamic section of an ELF file.

    Args:
        path: The file (not a symlink chain: resolve it first).

    Returns:
        Its :class:`ElfInfo`; a 32-bit or big-endian file yields only class/machine/type.

    Raises:
        NotAnElfError: If the file is not ELF or its dynamic section is malformed.
    """
    with path.open("rb") as fh:
        head = fh.read(64)
        if len(head) < 20 or head[:4] != ELF_MAGIC:
            raise NotAnElfError(f"{path} is not an ELF file")
        elf_class, data_enc = head[4], head[5]
        endian = "<" if data_enc == ELFDATA2LSB else ">"
        elf_type, machine = struct.unpack_from(endian + "HH", head, 16)
        if elf_class != ELFCLASS64 or data_enc != ELFDATA2LSB:
            return ElfInfo(elf_class, machine, elf_type)
        if len(head) < 64:
            raise NotAnElfError(f"{path}: truncated ELF header")
        (phoff,) = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
        loads: list[tuple[int, int, int]] = []
        dynamic: tuple[int, int] | None = None
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
                "<IIQQQQ", table, i * phentsize
            )
            if p_type == PT_LOAD:
                loads.append((p_offset, p_vaddr, p_filesz))
            elif p_type == PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return ElfInfo(elf_class, machine, elf_type)
        fh.seek(dynamic[0])
        dyn = fh.read(dynamic[1])
        entries = []
        for i in range(len(dyn) // 16):
            tag, value = struct.unpack_from("<qQ", dyn, i * 16)
            if tag == DT_NULL:
                break
            entries.append((tag, value))
        strtab = next((v for t, v in entries if t == DT_STRTAB), None)
        if strtab is None:
            return ElfInfo(elf_class, machine, elf_type)
        base = _vaddr_to_offset(loads, strtab)

        def string(offset: int) -> str:
            # Read each name where it is: the table also holds every symbol name (tens of MB
            # in paddle's libraries).
            fh.seek(base + offset)
            return _cstring(fh.read(4096), 0)

        needed = tuple(string(v) for t, v in entries if t == DT_NEEDED)
        soname = next((string(v) for t, v in entries if t == DT_SONAME), "")

        def paths(tag: int) -> tuple[str, ...]:
            out: list[str] = []
            for t, v in entries:
                if t == tag:
                    out += [p for p in string(v).split(":") if p]
            return tuple(out)

        rpath, runpath = paths(DT_RPATH), paths(DT_RUNPATH)
    return ElfInfo(elf_class, machine, elf_type, needed, soname, rpath, runpath)
