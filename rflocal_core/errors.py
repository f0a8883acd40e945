"""Errors with messages a user can act on: every error class of the core is defined here.

Each error names the field, the bad value and what was expected. They subclass
built-in exceptions so callers can catch them generically (``except ValueError``).
The command line turns :class:`RFLocalInputError` subclasses into exit status 2.
The modules that raise them re-export the public ones where they were documented
(``rflocal_core.measurements.MeasurementFormatError``, ``rflocal_core.dataset.DatasetExistsError``,
``rflocal_core.train.CheckpointError``, ...).
"""

from __future__ import annotations

from typing import Any


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


class AccessDeniedError(RFLocalInputError, PermissionError):
    """The signed-in user's role may not do this (a viewer deleting a run), or the password is wrong.

    An input error too, so a page that reports ``RFLocalInputError`` with ``st.error`` reports this one.
    """


class SignInThrottledError(AccessDeniedError):
    """Too many wrong passwords from one client: the next try is refused until ``retry_after_s`` passed."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class MeshError(ValueError):
    """A footprint cannot be turned into a closed mesh."""


class DatasetNotFoundError(RFLocalInputError, FileNotFoundError):
    """No complete dataset of that name exists."""


class DatasetExistsError(RFLocalInputError, FileExistsError):
    """A dataset of that name already exists."""


class RunNotFoundError(RFLocalInputError, FileNotFoundError):
    """No run of that id exists."""


class JobLimitError(RFLocalInputError, RuntimeError):
    """A job cannot start: the running jobs are at their limit and the queue is full
    (``settings.max_queued_jobs``)."""


class CheckpointError(RFLocalInputError, ValueError):
    """A run's checkpoint is missing, corrupt or not an RFLocal checkpoint."""


class NotFittedError(InvalidInputError):
    """``predict`` (or ``state_dict``) was called before ``fit``."""


class InferenceInputError(InvalidInputError):
    """A measurement file that does not fit the run (mode, scene, nodes)."""


class OtherSceneError(InvalidInputError):
    """A run evaluated on data of another place than its training data (scene digest, frame or nodes differ)."""


def join_path(prefix: str, path: str) -> str:
    """JSON path ``path`` placed under ``prefix``: ``("samples[3]", "id")`` gives ``"samples[3].id"``."""
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


class MeasurementFormatError(RFLocalInputError, ValueError):
    """A measurement file or object does not follow ``rflocal-measurements/1``.

    Parameters
    ----------
    message : str
        What was expected and what was found (without the path).
    path : str
        JSON path of the offending field, e.g. ``"samples[3].reports[0].rss_dbm"``; empty
        for problems of the file as a whole (size, encoding, JSON syntax).

    Attributes
    ----------
    path : str
        As given.
    detail : str
        ``message`` as given; ``str(error)`` is ``"<path>: <detail>"``.
    problems : tuple of str
        Every problem found, each ``"<path>: <detail>"`` (one for an error of one problem; see
        :meth:`combined`).
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        self.detail = message
        self.problems: tuple[str, ...] = (f"{path}: {message}" if path else message,)
        super().__init__(self.problems[0])

    def within(self, prefix: str) -> MeasurementFormatError:
        """Return the same error with its path placed under ``prefix``."""
        return MeasurementFormatError(self.detail, path=join_path(prefix, self.path))

    @classmethod
    def combined(cls, errors: list[MeasurementFormatError], *, found: int | None = None) -> MeasurementFormatError:
        """One error listing several problems (so a reader sees them all at once, not the first alone).

        ``str(error)`` is one line: ``"3 problems: mode: ...; samples: ...; nodes[0].id: ..."``,
        ended by ``"; and N more"`` when ``found`` (all problems found) exceeds the errors given;
        ``path`` is the first problem's. A single error is returned as it is.
        """
        found = len(errors) if found is None else found
        if found == 1 and len(errors) == 1:
            return errors[0]
        problems = tuple(p for e in errors for p in e.problems)
        more = found - len(problems)
        text = f"{found} problems: " + "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
        out = cls(text)
        out.path = errors[0].path  # where the first problem is, as for an error of one problem
        out.problems = problems + ((f"and {more} more",) if more > 0 else ())
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep ``path`` and the problems when the error crosses a process boundary (pickle).
        return (_rebuild_error, (type(self), self.detail, self.path, self.problems))


def _rebuild_error(cls: type[MeasurementFormatError], detail: str, path: str,
                   problems: tuple[str, ...] | None = None) -> MeasurementFormatError:
    if problems is None or len(problems) == 1:
        return cls(detail, path=path)
    out = cls(detail)  # a combined error: its text already names every path
    out.path, out.problems = path, tuple(problems)
    return out


class TableFormatError(MeasurementFormatError):
    """A table cannot be read, or the column mapping does not fit it (exit 2 on the command line)."""


class ServingError(RFLocalInputError, RuntimeError):
    """The workbench would serve other machines without sign-in (a non-loopback address, no auth configured).

    The message names the address and how to configure sign-in or opt out (``RFLOCAL_AUTH=none``);
    ``python -m rflocal_core serve`` exits 2 with it.
    """


class ClusterUnavailableError(RFLocalInputError, ConnectionError):
    """No Ray cluster answers at the address given (``--ray-address`` or ``$RAY_ADDRESS``); the message names it."""


class ClusterTaskError(RuntimeError):
    """A Ray task failed on every try (:data:`rflocal_core.cluster.TASK_RETRIES` retries); names the task and its error."""
