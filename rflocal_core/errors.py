"""Errors with messages a user can act on.

Each error names the field, the bad value and what was expected. They subclass
built-in exceptions so callers can catch them generically (``except ValueError``).
The command line turns :class:`RFLocalInputError` subclasses into exit status 2.
"""

from __future__ import annotations


class RFLocalInputError(Exception):
    """Base class of errors caused by user input (exit status 2 on the command line)."""


class InvalidInputError(RFLocalInputError, ValueError):
    """A parameter is out of range or malformed."""


class MeasurementQualityError(RFLocalInputError, ValueError):
    """A measurement file holds real-world faults (GPS sentinels, RSS sentinels, ...) and strict checking refuses it.

    ``report`` is the :class:`~rflocal_core.measurements.quality.QualityReport` of what was found.
    """

    def __init__(self, message: str, *, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class OSMFormatError(RFLocalInputError, ValueError):
    """An OSM or GeoJSON file cannot be read or holds no usable buildings."""


class SceneExistsError(RFLocalInputError, FileExistsError):
    """A scene of that name already exists."""


class SceneNotFoundError(RFLocalInputError, FileNotFoundError):
    """No scene of that name exists in the workspace."""


class OSMDownloadError(RFLocalInputError, ConnectionError):
    """OpenStreetMap could not be reached (typically: no internet)."""


class BackendUnavailableError(RuntimeError):
    """The ray-tracing backend (Mitsuba / Dr.Jit) cannot run on this machine."""


class SceneImportError(RFLocalInputError, ValueError):
    """A Mitsuba / Sionna scene file cannot be imported (not a scene, no geometry, missing meshes)."""
