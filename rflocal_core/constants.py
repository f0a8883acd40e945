"""Physical constants shared by the core: defined once here, imported everywhere else."""

from __future__ import annotations

#: Speed of light in vacuum, m/s (exact, by the definition of the metre).
SPEED_OF_LIGHT_M_S: float = 299_792_458.0

#: Speed of light in metres per nanosecond (time of arrival in ns times this is metres).
C_M_PER_NS: float = SPEED_OF_LIGHT_M_S / 1e9
