"""Quality checks of measurement files: the faults of real logs, dropped (or refused) and counted by reason.

A file can follow ``rflocal-measurements/1`` to the letter and still hold what real logs hold:
receivers that write ``lat: 0, lon: 0`` when their GPS has no fix, a "not received" code
written as an RSS value, a sample id twice. Imported as it is, 84 no-fix reports out of 13,468
moved a frame by 45 km and made networks predict 200 km off. :func:`check_quality` finds
these faults, drops what they touch, and says what it dropped::

    ms = load_measurements("log.json", on_fault="drop")   # duplicates, -999 dBm: left out, listed
    clean, report = check_quality(ms)                      # the rest of the checks
    report.summary()     # 'quality: dropped 84 reports (report_position_sentinel 84); kept 3,000 samples, ...'
    report.to_dict()     # by reason: count, unit, first sample ids, the first offender
    check_quality(ms, strict=True)                         # MeasurementQualityError instead

The checks (the thresholds are :class:`QualityLimits`):

- positions (lat/lon of truths, mobile-sensor reports and nodes) exactly at a GPS no-fix
  sentinel, (0, 0) or (-1, -1);
- truths and mobile-sensor positions farther from the median position than
  max(20 km, 10 x the median distance to it); nodes farther than max(100 km, 10 x that
  spread): fixed infrastructure legitimately lies farther out (a gateway of the Antwerp
  LoRaWAN file is 45.6 km from its median measurement), but not in another country;
- the same truth or mobile-sensor position repeated at least 5 times, farther than
  max(1 km, 2 x the spread) from every other position (a stale or default fix), where such
  positions mostly vary (at most 20 % of them on repeated positions: else they are fixed
  sensors);
- RSS at or below -180 dBm (under any receiver's sensitivity: a "not received" code), and
  RSS values that are a constant floor: a value at the bottom of the distribution held by at
  least 20 reports (and 0.5 %), 5 x more often than any value within 3 dB above it;
- ToA longer than light needs for 3 x the file's extent (at least 20 km);
- samples left with fewer than ``min_reports`` reports.

What is dropped: a faulty report (all its values); a faulty truth (the sample stays, without
truth: unlabeled); a faulty node position (the node stays with an unknown position, its
measurements still serve fingerprinting); a sample left with too few reports. Positions
given only as scene metres (``x_m``/``y_m``) are checked among themselves (extent, repeats)
but are never sentinels.

Faults found while reading (``load_measurements(..., on_fault="drop")``: later duplicate
sample ids, RSS or ToA outside the format's range) arrive in ``ms.dropped`` and are counted
here as well. A fixed node can have only one position in this format; where positions come
per row (a table with node position columns), :func:`fixed_node_positions` settles each node's
position and names the rows that place it elsewhere.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.errors import InvalidInputError, MeasurementQualityError
from rflocal_core.geo import equirectangular_m
from rflocal_core.measurements.format import MeasurementSet, Node, Sample

#: Sample (or node) ids listed per reason.
MAX_LISTED = 5
#: Metres per degree of latitude (the local projection used for distances).

#: Reason -> (unit, what it means). Units: ``samples``, ``reports``, ``truths``, ``node_positions``.
REASONS: dict[str, tuple[str, str]] = {
    "duplicate_sample_id": ("samples", "a sample id seen before in the file (the first sample of an id is kept)"),
    "rss_out_of_range": ("reports", "RSS outside the format's range [-200, 30] dBm"),
    "toa_out_of_range": ("reports", "ToA outside the format's range [0, 1e7] ns"),
    "report_position_sentinel": ("reports", "mobile-sensor position at a GPS no-fix sentinel, (0, 0) or (-1, -1)"),
    "truth_position_sentinel": ("truths", "true position at a GPS no-fix sentinel; the sample is kept unlabeled"),
    "node_position_sentinel": ("node_positions", "node position at a GPS sentinel; the node is kept, position unknown"),
    "report_position_outlier": ("reports", "mobile-sensor position outside the file's robust extent"),
    "truth_position_outlier": ("truths", "true position outside the file's robust extent; kept unlabeled"),
    "node_position_outlier": ("node_positions", "node position far outside the file's extent; position unknown"),
    "report_position_repeated": ("reports", "mobile-sensor position repeated far from every other position"),
    "truth_position_repeated": ("truths", "true position repeated far from every other position; kept unlabeled"),
    "rss_sentinel": ("reports", "RSS that is a receiver's 'not received' code or constant floor, not a measurement"),
    "toa_implausible": ("reports", "ToA longer than light needs to cross the file's extent three times"),
    "node_moved": ("reports", "report placing its fixed node elsewhere than most of the node's reports"),
    "node_position_unstable": ("node_positions", "fixed node whose reported positions agree on none; position unknown"),
    "too_few_reports": ("samples", "sample left with fewer reports than needed after cleaning"),
}

#: Units of the counts, in the order they are reported.
UNITS: tuple[str, ...] = ("samples", "reports", "truths", "node_positions")


@dataclass(frozen=True)
class QualityLimits:
    """Thresholds of :func:`check_quality` (defaults as in the module docstring)."""

    #: Exact (lat, lon) pairs that GPS receivers write without a fix.
    sentinel_positions: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-1.0, -1.0))
    #: Truths and mobile positions farther than max(this, factor x spread) from the median are outliers (m).
    extent_min_m: float = 20_000.0
    extent_spread_factor: float = 10.0
    #: Nodes farther than max(this, factor x spread) from the median position are outliers (m).
    node_extent_min_m: float = 100_000.0
    #: A position repeated this often, farther than max(repeat_far_min_m, factor x spread) from all others.
    repeat_min: int = 5
    repeat_far_min_m: float = 1_000.0
    repeat_far_spread_factor: float = 2.0
    #: ... unless more than this share of the positions are repeated ones (fixed sensors, not GPS fixes).
    repeat_max_share: float = 0.2
    #: RSS at or below this is a code, not a measurement (thermal noise is -174 dBm/Hz) (dBm).
    rss_code_max_dbm: float = -180.0
    #: A floor value: at least this many reports and this fraction of them ...
    floor_min_count: int = 20
    floor_min_fraction: float = 0.005
    #: ... this many times more than any value within floor_window_db above it ...
    floor_ratio: float = 5.0
    floor_window_db: float = 3.0
    #: ... with at most this fraction of the RSS values below it.
    floor_bottom_fraction: float = 0.05
    #: ToA beyond max(toa_min_m, toa_extent_factor x the file's extent) of travel is implausible (m).
    toa_min_m: float = 20_000.0
    toa_extent_factor: float = 3.0
    #: Positions of one fixed node farther apart than this from its usual one are moves (m).
    node_move_tolerance_m: float = 50.0


# --------------------------------------------------------------------------- the report


@dataclass
class QualityIssue:
    """What was found for one reason: how many, of what, where first."""

    reason: str
    unit: str
    what: str
    count: int = 0
    ids: list[str] = field(default_factory=list)
    first: str = ""

    def to_dict(self) -> dict[str, Any]:
        key = "node_ids" if self.unit == "node_positions" else "sample_ids"
        return {"count": self.count, "unit": self.unit, "what": self.what, key: list(self.ids), "first": self.first}


@dataclass
class QualityReport:
    """What the quality checks dropped, by reason, and what they kept.

    Attributes
    ----------
    issues : dict of str to QualityIssue
        By reason (:data:`REASONS`, or a reason a reader adds), in the order first found.
    kept : dict of str to int
        ``samples``, ``reports``, ``truths`` (labeled samples), ``node_positions`` (nodes with
        a known position) left after cleaning; empty until :func:`check_quality` fills it.
    """

    issues: dict[str, QualityIssue] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, *, sample_id: str | None = None, where: str = "", message: str = "",
            count: int = 1, unit: str | None = None, what: str | None = None) -> None:
        """Count ``count`` items dropped for ``reason``.

        Parameters
        ----------
        reason : str
            A key of :data:`REASONS`, or a new reason (then give ``unit`` and ``what``).
        sample_id : str, optional
            The sample (or, for node positions, the node) concerned; the first few are listed.
        where, message : str
            Where (a JSON path, a file line) and what was found; the first one is kept.
        unit : {"samples", "reports", "truths", "node_positions"}, optional
            What is counted (default: the reason's).
        what : str, optional
            What the reason means, for a reason not in :data:`REASONS`.
        """
        known_unit, known_what = REASONS.get(reason, (None, None))
        unit = unit or known_unit
        if unit not in UNITS:
            msg = f"unit: expected one of {', '.join(UNITS)} for reason {reason!r}, got {unit!r}"
            raise InvalidInputError(msg)
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            msg = f"count: expected a non-negative integer, got {count!r}"
            raise InvalidInputError(msg)
        issue = self.issues.get(reason)
        if issue is None:
            issue = self.issues[reason] = QualityIssue(reason, unit, what or known_what or reason)
        issue.count += int(count)
        if sample_id is not None and sample_id not in issue.ids and len(issue.ids) < MAX_LISTED:
            issue.ids.append(str(sample_id))
        if not issue.first and (where or message):
            issue.first = f"{where}: {message}" if where and message else where or message

    def merge(self, other: QualityReport) -> QualityReport:
        """Add the counts of ``other`` (e.g. the rows a reader dropped) to this report; return it."""
        for reason, theirs in other.issues.items():
            mine = self.issues.get(reason)
            if mine is None:
                self.issues[reason] = QualityIssue(reason, theirs.unit, theirs.what, theirs.count,
                                                   list(theirs.ids), theirs.first)
                continue
            mine.count += theirs.count
            mine.ids += [i for i in theirs.ids if i not in mine.ids][: MAX_LISTED - len(mine.ids)]
            mine.first = mine.first or theirs.first
        if not self.kept:
            self.kept = dict(other.kept)
        return self

    @property
    def faulty(self) -> bool:
        """Whether anything was dropped."""
        return any(issue.count for issue in self.issues.values())

    @property
    def dropped(self) -> dict[str, int]:
        """Counts dropped per unit (``samples``, ``reports``, ``truths``, ``node_positions``)."""
        out = dict.fromkeys(UNITS, 0)
        for issue in self.issues.values():
            out[issue.unit] += issue.count
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``faulty``, ``summary``, ``dropped`` and ``kept`` per unit, ``reasons``."""
        return {"faulty": self.faulty, "summary": self.summary(), "dropped": self.dropped, "kept": dict(self.kept),
                "reasons": {reason: issue.to_dict() for reason, issue in self.issues.items() if issue.count}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityReport:
        """The report of :meth:`to_dict` (as stored in a dataset's attributes)."""
        out = cls(kept=dict(d.get("kept") or {}))
        for reason, row in (d.get("reasons") or {}).items():
            ids = row.get("sample_ids", row.get("node_ids", []))
            out.issues[reason] = QualityIssue(reason, row["unit"], row["what"], int(row["count"]), list(ids),
                                              row.get("first", ""))
        return out

    def rows(self) -> list[dict[str, Any]]:
        """A table: one row per reason with a count (``reason``, ``count``, ``unit``, ``first ids``, ``first``, ``what``)."""
        return [{"reason": i.reason, "count": i.count, "unit": i.unit, "first ids": ", ".join(i.ids),
                 "first": i.first, "what": i.what} for i in self.issues.values() if i.count]

    def summary(self) -> str:
        """One line: what was dropped by unit and reason, and what was kept."""
        kept = ""
        if self.kept:
            kept = f"kept {self.kept.get('samples', 0):,} samples, {self.kept.get('reports', 0):,} reports"
        if not self.faulty:
            return f"quality: no faults found{'; ' + kept if kept else ''}"
        parts = []
        for unit in UNITS:
            reasons = [f"{i.reason} {i.count:,}" for i in self.issues.values() if i.unit == unit and i.count]
            if reasons:
                parts.append(f"{self.dropped[unit]:,} {unit.replace('_', ' ')} ({', '.join(reasons)})")
        return f"quality: dropped {', '.join(parts)}{'; ' + kept if kept else ''}"

    def refusal(self) -> str:
        """One line for a strict refusal: the first offender, then every reason with its count and first ids."""
        issues = [i for i in self.issues.values() if i.count]
        if not issues:
            return "quality: no faults found"
        listed = "; ".join(f"{i.reason}: {i.count:,} {i.unit.replace('_', ' ')}"
                           + (f" ({', '.join(repr(s) for s in i.ids)}{', ...' if i.count > len(i.ids) else ''})"
                              if i.ids else "") for i in issues)
        return (f"quality: refused (strict): {issues[0].first or issues[0].what}; found {listed}; "
                "without strict these are dropped and reported")


# --------------------------------------------------------------------------- positions


@dataclass
class _Verdict:
    """What cleaning removes: reports (sample, report index), truths (sample), node positions (node index)."""

    reports: set[tuple[int, int]] = field(default_factory=set)
    truths: set[int] = field(default_factory=set)
    nodes: set[int] = field(default_factory=set)
    extent_m: float = 0.0


@dataclass
class _Points:
    """Every position of a file, flat: kind ``node`` / ``report`` / ``truth``, where, lat/lon and x/y."""

    kind: list[str] = field(default_factory=list)
    ref: list[tuple[int, int]] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def put(self, kind: str, ref: tuple[int, int], item: Any) -> None:
        self.kind.append(kind)
        self.ref.append(ref)
        for name in ("lat", "lon", "x", "y"):
            value = getattr(item, name if name in ("lat", "lon") else f"{name}_m")
            getattr(self, name).append(math.nan if value is None else float(value))


def _points(ms: MeasurementSet) -> _Points:
    pts = _Points()
    for k, node in enumerate(ms.nodes):
        if node.has_position:
            pts.put("node", (k, -1), node)
    for i, sample in enumerate(ms.samples):
        for j, report in enumerate(sample.reports):
            if report.node is None:
                pts.put("report", (i, j), report)
        if sample.truth is not None:
            pts.put("truth", (i, -1), sample.truth)
    return pts


def _where(ms: MeasurementSet, kind: str, ref: tuple[int, int]) -> tuple[str, str]:
    """``(sample or node id, where)`` of a position, by id (indices may have shifted when reading dropped items)."""
    if kind == "node":
        node = ms.nodes[ref[0]]
        return node.id, f"node {node.id!r}"
    sid = ms.samples[ref[0]].id
    return sid, f"sample {sid!r} " + ("truth" if kind == "truth" else f"reports[{ref[1]}]")


def _mark(verdict: _Verdict, kind: str, ref: tuple[int, int]) -> None:
    if kind == "node":
        verdict.nodes.add(ref[0])
    elif kind == "truth":
        verdict.truths.add(ref[0])
    else:
        verdict.reports.add(ref)


def _local_m(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Equirectangular metres around (lat0, lon0): exact enough for the km-scale thresholds used here."""
    return np.column_stack(equirectangular_m(lat, lon, lat0, lon0))


def _check_positions(ms: MeasurementSet, limits: QualityLimits, report: QualityReport) -> _Verdict:
    verdict = _Verdict()
    pts = _points(ms)
    lat, lon = np.asarray(pts.lat, dtype=float), np.asarray(pts.lon, dtype=float)
    x, y = np.asarray(pts.x, dtype=float), np.asarray(pts.y, dtype=float)
    geo = np.isfinite(lat)
    sentinel = np.zeros(len(lat), dtype=bool)
    for s_lat, s_lon in limits.sentinel_positions:
        sentinel |= geo & (lat == s_lat) & (lon == s_lon)
    for p in np.flatnonzero(sentinel):
        kind, ref = pts.kind[p], pts.ref[p]
        sid, where = _where(ms, kind, ref)
        report.add(f"{kind}_position_sentinel", sample_id=sid, where=where,
                   message=f"lat/lon ({lat[p]:g}, {lon[p]:g}) is a GPS no-fix sentinel")
        _mark(verdict, kind, ref)
    extents = []
    for group in (geo & ~sentinel, ~geo & np.isfinite(x)):
        idx = np.flatnonzero(group)
        if len(idx) == 0:
            continue
        if np.isfinite(lat[idx]).all():
            lat0, lon0 = float(np.median(lat[idx])), float(np.median(lon[idx]))
            xy = _local_m(lat[idx], lon[idx], lat0, lon0)
            labels = [f"lat/lon ({lat[p]:.6f}, {lon[p]:.6f})" for p in idx]
            centre = f"({lat0:.5f}, {lon0:.5f})"
        else:
            xy = np.column_stack([x[idx], y[idx]])
            labels = [f"x/y ({x[p]:.1f}, {y[p]:.1f}) m" for p in idx]
            centre = "(scene metres)"
        kinds = [pts.kind[p] for p in idx]
        refs = [pts.ref[p] for p in idx]
        extents.append(_check_group(ms, xy, kinds, refs, labels, centre, limits, report, verdict))
    verdict.extent_m = max(extents, default=0.0)
    return verdict


def _check_group(
    ms: MeasurementSet, xy: np.ndarray, kinds: list[str], refs: list[tuple[int, int]], labels: list[str],
    centre_label: str, limits: QualityLimits, report: QualityReport, verdict: _Verdict,
) -> float:
    """Outliers and repeated positions of one group of comparable positions; return the kept extent (m)."""
    gps = np.array([k != "node" for k in kinds])
    ref_xy = xy[gps] if gps.any() else xy  # the area measured: truths and mobile sensors when there are any
    centre = np.median(ref_xy, axis=0)
    dist = np.hypot(*(xy - centre).T)
    spread = float(np.median(np.hypot(*(ref_xy - centre).T)))
    floor_m = np.where(gps, limits.extent_min_m, limits.node_extent_min_m)
    limit = np.maximum(floor_m, limits.extent_spread_factor * spread)
    out = dist > limit
    for p in np.flatnonzero(out):
        sid, where = _where(ms, kinds[p], refs[p])
        report.add(f"{kinds[p]}_position_outlier", sample_id=sid, where=where, message=(
            f"{labels[p]} is {dist[p] / 1000:.1f} km from the file's median position {centre_label}; expected at "
            f"most {limit[p] / 1000:.1f} km (the larger of {floor_m[p] / 1000:g} km and "
            f"{limits.extent_spread_factor:g} x the median distance {spread / 1000:.2f} km)"))
        _mark(verdict, kinds[p], refs[p])
    kind_arr = np.asarray(kinds)
    repeated = [hit for kind in ("report", "truth")
                for hit in _repeated(xy, (kind_arr == kind) & ~out, ~out, spread, limits)]
    for p, count, nearest in repeated:
        sid, where = _where(ms, kinds[p], refs[p])
        report.add(f"{kinds[p]}_position_repeated", sample_id=sid, where=where, message=(
            f"{labels[p]} is repeated {count} times, {nearest / 1000:.1f} km from every other position; expected "
            f"within {max(limits.repeat_far_min_m, limits.repeat_far_spread_factor * spread) / 1000:.1f} km"))
        _mark(verdict, kinds[p], refs[p])
    keep = ~out
    keep[[p for p, _, _ in repeated]] = False
    if not keep.any():
        return 0.0
    return float((xy[keep].max(0) - xy[keep].min(0)).max())


def _repeated(xy: np.ndarray, candidates: np.ndarray, others: np.ndarray, spread: float,
              limits: QualityLimits) -> list[tuple[int, int, float]]:
    """``(index, times, metres to the nearest other position)`` of candidate positions repeated far from the rest.

    Only where positions mostly vary (moving receivers): when more than ``repeat_max_share`` of
    them sit on repeated positions, they are fixed sensors, and a repeat is no fault.
    """
    cand = np.flatnonzero(candidates)
    if len(cand) < limits.repeat_min:
        return []
    counts = Counter(map(tuple, xy[cand].tolist()))
    heavy = {pos: n for pos, n in counts.items() if n >= limits.repeat_min}
    if not heavy or sum(heavy.values()) > limits.repeat_max_share * len(cand):
        return []
    distinct = np.unique(xy[others], axis=0)
    if len(distinct) < 2:
        return []
    tree = cKDTree(distinct)
    far_m = max(limits.repeat_far_min_m, limits.repeat_far_spread_factor * spread)
    out = []
    for pos, n in heavy.items():
        nearest = float(tree.query(np.asarray(pos), k=2)[0][1])  # k=1 is the position itself
        if nearest > far_m:
            out += [(int(p), n, nearest) for p in cand if tuple(xy[p].tolist()) == pos]
    return out


# --------------------------------------------------------------------------- values


def _floor_values(rss: np.ndarray, limits: QualityLimits) -> list[tuple[float, int, int]]:
    """``(value, count, largest count within the window above)`` of constant floors at the bottom of ``rss``."""
    n = len(rss)
    if n == 0:
        return []
    values, counts = np.unique(rss, return_counts=True)
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    need = max(limits.floor_min_count, limits.floor_min_fraction * n)
    out = []
    for k in range(len(values)):
        if below[k] > limits.floor_bottom_fraction * n:
            break
        if counts[k] < need:
            continue
        above = (values > values[k]) & (values <= values[k] + limits.floor_window_db)
        ref = int(counts[above].max()) if above.any() else 0
        if counts[k] >= limits.floor_ratio * max(ref, 1):
            out.append((float(values[k]), int(counts[k]), ref))
    return out


def _check_values(ms: MeasurementSet, limits: QualityLimits, report: QualityReport, verdict: _Verdict) -> None:
    refs = [(i, j) for i, s in enumerate(ms.samples) for j in range(len(s.reports)) if (i, j) not in verdict.reports]
    rss = np.array([ms.samples[i].reports[j].rss_dbm for i, j in refs], dtype=float)  # None -> nan
    toa = np.array([ms.samples[i].reports[j].toa_ns for i, j in refs], dtype=float)
    codes = np.isfinite(rss) & (rss <= limits.rss_code_max_dbm)
    floors = _floor_values(rss[np.isfinite(rss) & ~codes], limits)
    floor_of = {value: (count, ref) for value, count, ref in floors}
    toa_limit_m = max(limits.toa_min_m, limits.toa_extent_factor * verdict.extent_m)
    n_rss = int(np.isfinite(rss).sum())
    for r, (i, j) in enumerate(refs):
        sid = ms.samples[i].id
        where = f"sample {sid!r} reports[{j}]"
        if codes[r]:
            report.add("rss_sentinel", sample_id=sid, where=f"{where}.rss_dbm", message=(
                f"{rss[r]:g} dBm is at or below {limits.rss_code_max_dbm:g} dBm, under any receiver's sensitivity "
                "(thermal noise is -174 dBm/Hz): a 'not received' code"))
        elif rss[r] in floor_of:
            count, ref = floor_of[rss[r]]
            report.add("rss_sentinel", sample_id=sid, where=f"{where}.rss_dbm", message=(
                f"{rss[r]:g} dBm is a constant floor: {count:,} of {n_rss:,} RSS values are exactly this, at the "
                f"bottom of the distribution, against at most {ref:,} for any value up to "
                f"{limits.floor_window_db:g} dB above it"))
        elif np.isfinite(toa[r]) and toa[r] * C_M_PER_NS > toa_limit_m:
            report.add("toa_implausible", sample_id=sid, where=f"{where}.toa_ns", message=(
                f"{toa[r]:g} ns is {toa[r] * C_M_PER_NS / 1000:,.1f} km of travel; expected at most "
                f"{toa_limit_m / 1000:,.1f} km ({limits.toa_extent_factor:g} x the file's extent of "
                f"{verdict.extent_m / 1000:,.1f} km, at least {limits.toa_min_m / 1000:g} km)"))
        else:
            continue
        verdict.reports.add((i, j))


# --------------------------------------------------------------------------- cleaning


def _rebuild(
    ms: MeasurementSet, verdict: _Verdict, min_reports: int, report: QualityReport,
) -> tuple[tuple[Node, ...], tuple[Sample, ...]]:
    nodes = tuple(Node(n.id, tx_power_dbm=n.tx_power_dbm) if k in verdict.nodes else n for k, n in enumerate(ms.nodes))
    samples = []
    for i, sample in enumerate(ms.samples):
        reports = tuple(r for j, r in enumerate(sample.reports) if (i, j) not in verdict.reports)
        if len(reports) < min_reports:
            lost = len(sample.reports) - len(reports)
            report.add("too_few_reports", sample_id=sample.id, where=f"sample {sample.id!r}", message=(
                f"{len(reports)} report{'s' if len(reports) != 1 else ''} left"
                + (f" ({lost} dropped)" if lost else "") + f"; expected at least {min_reports}"))
            continue
        truth = None if i in verdict.truths else sample.truth
        if reports == sample.reports and truth is sample.truth:
            samples.append(sample)
        else:
            samples.append(replace(sample, reports=reports, truth=truth))
    return nodes, tuple(samples)


def _absorb(report: QualityReport, ms: MeasurementSet) -> None:
    """Count what reading left out (``ms.dropped``)."""
    for d in ms.dropped:
        report.add(d.reason, sample_id=d.sample_id, where=d.path, message=d.message, unit=d.unit,
                   what=REASONS.get(d.reason, (None, d.reason))[1])


def check_quality(
    ms: MeasurementSet, *, strict: bool = False, min_reports: int = 1, prior: QualityReport | None = None,
    limits: QualityLimits | None = None,
) -> tuple[MeasurementSet, QualityReport]:
    """Find the faults of real logs in ``ms``; return the cleaned set and what was dropped.

    Parameters
    ----------
    ms : MeasurementSet
        A validated set, e.g. ``load_measurements(path, on_fault="drop")`` (its ``dropped`` are
        counted too).
    strict : bool
        Refuse a set with any fault (also one counted in ``ms.dropped`` or ``prior``) instead
        of dropping it.
    min_reports : int
        Samples left with fewer reports are dropped (``too_few_reports``).
    prior : QualityReport, optional
        Faults counted before (e.g. the rows a table reader dropped); merged into the result,
        and refused with ``strict``.
    limits : QualityLimits, optional
        The thresholds (default :class:`QualityLimits`).

    Returns
    -------
    (MeasurementSet, QualityReport)
        The set without the faulty reports, truths, node positions and samples (its
        ``dropped`` emptied: they are in the report), and the report (``kept`` filled).

    Raises
    ------
    MeasurementQualityError
        With ``strict``, when anything is faulty: one line naming the first offender and
        every reason with its count and first sample ids (``error.report`` holds the report).
        Also when no sample is left (and ``ms`` lists no invalid ones).
    InvalidInputError
        Bad ``ms``, ``min_reports`` or ``limits``.
    """
    if not isinstance(ms, MeasurementSet):
        msg = f"ms: expected a MeasurementSet, got a {type(ms).__name__}"
        raise InvalidInputError(msg)
    if isinstance(min_reports, bool) or not isinstance(min_reports, (int, np.integer)) or min_reports < 1:
        msg = f"min_reports: expected an integer >= 1, got {min_reports!r}"
        raise InvalidInputError(msg)
    limits = limits or QualityLimits()
    if not isinstance(limits, QualityLimits):
        msg = f"limits: expected QualityLimits, got a {type(limits).__name__}"
        raise InvalidInputError(msg)
    report = QualityReport()
    if prior is not None:
        report.merge(prior)
    _absorb(report, ms)
    verdict = _check_positions(ms, limits, report)
    _check_values(ms, limits, report, verdict)
    nodes, samples = _rebuild(ms, verdict, int(min_reports), report)
    report.kept = {"samples": len(samples), "reports": sum(len(s.reports) for s in samples),
                   "truths": sum(s.truth is not None for s in samples),
                   "node_positions": sum(n.has_position for n in nodes)}
    if strict and report.faulty:
        raise MeasurementQualityError(report.refusal(), report=report)
    if not samples and not ms.errors:
        msg = f"samples: expected at least one sample left after the quality checks, got none ({report.summary()})"
        raise MeasurementQualityError(msg, report=report)
    return replace(ms, nodes=nodes, samples=samples, dropped=()), report


# --------------------------------------------------------------------------- nodes given per row


@dataclass(frozen=True)
class NodePositions:
    """Where each fixed node is, settled from positions given per row (:func:`fixed_node_positions`).

    Attributes
    ----------
    positions : dict of str to (lat, lon, alt_m) or None
        Per node id: the position most of its rows agree on (``alt_m`` None when no row has
        one), or None when they agree on none (``node_position_unstable``: position unknown).
    moved : numpy.ndarray of bool
        Per input row: the row places its node elsewhere than most rows do; drop its report
        (counted as ``node_moved``).
    report : QualityReport
        ``node_moved`` and ``node_position_unstable``, to pass on as ``prior``.
    """

    positions: dict[str, tuple[float, float, float | None] | None]
    moved: np.ndarray
    report: QualityReport


def fixed_node_positions(
    node_ids: Sequence[str], lat: Iterable[float], lon: Iterable[float], *, alt_m: Iterable[float] | None = None,
    sample_ids: Sequence[str] | None = None, limits: QualityLimits | None = None,
) -> NodePositions:
    """Settle each fixed node's one position from positions given per row (a node whose position moves is a fault).

    Per node, the rows within ``limits.node_move_tolerance_m`` (50 m) of the median of its
    positions agree; if they are more than half of its rows, the node is at their mean and the
    other rows are ``moved`` (their reports dropped, ``node_moved``). Otherwise its position
    is unknown (``node_position_unstable``) and no row is dropped. Rows without a finite
    position are ignored (a node without any gets None).

    Parameters
    ----------
    node_ids : sequence of str
        The node of each row.
    lat, lon : iterables of float
        The node position each row gives (NaN: none).
    alt_m : iterable of float, optional
        The node height each row gives (NaN: none).
    sample_ids : sequence of str, optional
        The sample of each row, named in the report.
    """
    limits = limits or QualityLimits()
    ids = [str(n) for n in node_ids]
    lat_a, lon_a = np.asarray(list(lat), dtype=float), np.asarray(list(lon), dtype=float)
    alt_a = np.full(len(ids), np.nan) if alt_m is None else np.asarray(list(alt_m), dtype=float)
    n_samples = len(ids) if sample_ids is None else len(sample_ids)
    if not len(ids) == len(lat_a) == len(lon_a) == len(alt_a) == n_samples:
        msg = (f"node_ids, lat, lon, alt_m, sample_ids: expected one value per row each, got {len(ids)}, {len(lat_a)}, "
               f"{len(lon_a)}, {len(alt_a)}, {len(sample_ids) if sample_ids is not None else '-'}")
        raise InvalidInputError(msg)
    report = QualityReport()
    moved = np.zeros(len(ids), dtype=bool)
    positions: dict[str, tuple[float, float, float | None] | None] = {}
    rows_of: dict[str, list[int]] = {}
    for r, node in enumerate(ids):
        rows_of.setdefault(node, []).append(r)
    for node, rows in rows_of.items():
        rows = np.asarray(rows)
        rows = rows[np.isfinite(lat_a[rows]) & np.isfinite(lon_a[rows])]
        if len(rows) == 0:
            positions[node] = None
            continue
        lat0, lon0 = float(np.median(lat_a[rows])), float(np.median(lon_a[rows]))
        dist = np.hypot(*_local_m(lat_a[rows], lon_a[rows], lat0, lon0).T)
        agree = dist <= limits.node_move_tolerance_m
        if agree.sum() * 2 <= len(rows):
            positions[node] = None
            report.add("node_position_unstable", sample_id=node, where=f"node {node!r}", message=(
                f"its {len(rows)} rows give positions up to {dist.max() / 1000:.2f} km apart, only {int(agree.sum())} "
                f"within {limits.node_move_tolerance_m:g} m of their median; expected most to agree"))
            continue
        alts = alt_a[rows[agree]]
        alts = alts[np.isfinite(alts)]
        positions[node] = (float(lat_a[rows[agree]].mean()), float(lon_a[rows[agree]].mean()),
                           float(np.median(alts)) if len(alts) else None)
        for r, d in zip(rows[~agree], dist[~agree]):
            moved[r] = True
            sid = sample_ids[r] if sample_ids is not None else None
            report.add("node_moved", sample_id=sid, where=f"row {r}" + (f" (sample {sid!r})" if sid else ""), message=(
                f"node {node!r} at ({lat_a[r]:.6f}, {lon_a[r]:.6f}), {d:,.0f} m from where most of its rows place "
                f"it; expected within {limits.node_move_tolerance_m:g} m"))
    return NodePositions(positions, moved, report)
