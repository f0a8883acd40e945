"""Choose and check the ray-tracing backend before Sionna RT is imported.

Sionna RT runs on Mitsuba 3 / Dr.Jit: the CUDA variant on an NVIDIA GPU, else the
LLVM variant on the CPU. The LLVM variant loads the system's LLVM shared library at
run time; an old one (Debian 12's LLVM 15) aborts the whole process at the first
kernel (``LLVM ERROR: Cannot select ... fmaximum``), which cannot be caught. So the
library is checked here, before anything is traced, and a missing or old one gives
an error that names the fix.
"""

from __future__ import annotations

import glob
import os
import platform
import re
from dataclasses import dataclass

from rflocal_core.errors import BackendUnavailableError

#: Oldest LLVM major version known to work with Dr.Jit 1.5 (15 aborts).
MIN_LLVM_MAJOR = 16

#: Where Dr.Jit looks for ``libLLVM`` on Linux (same patterns as drjit-core).
LLVM_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libLLVM*.so*",
    "/usr/lib/aarch64-linux-gnu/libLLVM*.so*",
    "/usr/lib/llvm-*/lib/libLLVM*.so*",
    "/usr/lib64/libLLVM*.so*",
    "/usr/lib/libLLVM*.so*",
)

FIX = (
    "install LLVM 19 (Debian/Ubuntu: 'sudo apt-get install -y libllvm19'; 'make setup' does it), "
    "or point DRJIT_LIBLLVM_PATH at a libLLVM.so of version >= "
    f"{MIN_LLVM_MAJOR}"
)


@dataclass(frozen=True)
class BackendInfo:
    """The chosen Mitsuba variant and what it runs on."""

    variant: str
    device: str  # "cuda" or "cpu"
    llvm_library: str | None


def _llvm_major(path: str) -> int | None:
    name = os.path.basename(path)
    match = re.match(r"libLLVM-(\d+)", name) or re.match(r"libLLVM\.so\.(\d+)", name)
    if match:
        return int(match.group(1))
    real = os.path.realpath(path)
    if real != path:
        return _llvm_major(real)
    return None


def find_llvm() -> tuple[str | None, int | None]:
    """Return the newest ``libLLVM`` on this machine and its major version.

    ``DRJIT_LIBLLVM_PATH`` wins when set (its version is read from the file name
    when it carries one).
    """
    forced = os.environ.get("DRJIT_LIBLLVM_PATH")
    if forced:
        return (forced, _llvm_major(forced)) if os.path.isfile(forced) else (None, None)
    best: tuple[str | None, int | None] = (None, None)
    for pattern in LLVM_GLOBS:
        for path in glob.glob(pattern):
            major = _llvm_major(path)
            if major is not None and (best[1] is None or major > best[1]):
                best = (path, major)
    return best


def cuda_available() -> bool:
    """True when Dr.Jit can use an NVIDIA GPU."""
    try:
        import drjit as dr

        return bool(dr.has_backend(dr.JitBackend.CUDA))
    except Exception:  # no driver, no GPU, or drjit missing: all mean "no CUDA"
        return False


def check_llvm() -> str | None:
    """Raise :class:`BackendUnavailableError` unless a usable LLVM is installed.

    Returns the library path (None off Linux, where Dr.Jit finds LLVM its own way).
    """
    if platform.system() != "Linux":
        return None
    forced = os.environ.get("DRJIT_LIBLLVM_PATH")
    path, major = find_llvm()
    if forced and path is None:
        msg = f"DRJIT_LIBLLVM_PATH={forced!r} does not exist; {FIX}"
        raise BackendUnavailableError(msg)
    if path is None:
        msg = f"Sionna RT needs the LLVM shared library on the CPU, and none was found; {FIX}"
        raise BackendUnavailableError(msg)
    if major is not None and major < MIN_LLVM_MAJOR:
        msg = (
            f"Sionna RT on the CPU needs LLVM >= {MIN_LLVM_MAJOR}, but the newest found is LLVM {major} "
            f"({path}), which aborts with 'Cannot select ... fmaximum'; {FIX}"
        )
        raise BackendUnavailableError(msg)
    return path


_INFO: BackendInfo | None = None


def ensure_backend() -> BackendInfo:
    """Select the Mitsuba variant (CUDA when present, else LLVM) and import Sionna RT.

    Safe to call many times; the choice is made once per process.
    """
    global _INFO
    if _INFO is not None:
        return _INFO
    import mitsuba as mi

    if cuda_available():
        variant, device, library = "cuda_ad_mono_polarized", "cuda", None
    else:
        library = check_llvm()
        variant, device = "llvm_ad_mono_polarized", "cpu"
    if mi.variant() != variant:
        mi.set_variant(variant)
    import sionna.rt  # noqa: F401  (registers radio materials for the variant)

    _INFO = BackendInfo(variant, device, library)
    return _INFO
