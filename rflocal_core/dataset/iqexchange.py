"""IQ captures between a dataset's arrays and the optional ``iq`` object of measurement reports.

Export: a report whose capture is stored (``mask_iq``) gets
``{"sample_rate_hz", "t0_s", "i": [...], "q": [...]}`` with the samples in √mW (codes times
``iq_scale``, five significant digits: int16 codes hold about 4.5). Import: every capture of a
file must have the same sample rate and length (they become one ``[N, T, S, 2, n]`` array);
each is stored as int16 codes with its own scale (:func:`rflocal_core.iq.quantize`), so an
exported capture reads back to the same codes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from rflocal_core import iq
from rflocal_core.errors import MeasurementFormatError
from rflocal_core.measurements.format import IQCapture, MeasurementSet

#: The ``samples/`` arrays a capture is read from.
ROWS = ("iq", "iq_scale", "iq_t0_s", "mask_iq")


def has_captures(samples: zarr.Group) -> bool:
    """Whether a dataset's samples hold IQ captures."""
    return "mask_iq" in samples and "iq" in samples


def capture_of(rows: dict[str, np.ndarray], i: int, t: int, s: int, sample_rate_hz: float) -> dict[str, Any]:
    """``{"iq": IQCapture}`` of row ``i``, step ``t``, slot ``s`` when it has a capture, else ``{}``."""
    if not rows["mask_iq"][i, t, s]:
        return {}
    x = iq.dequantize(rows["iq"][i, t, s], float(rows["iq_scale"][i, t, s]))
    short = [float(f"{v:.5g}") for v in np.concatenate([x.real, x.imag]).tolist()]
    half = len(x)
    return {"iq": IQCapture(float(sample_rate_hz), float(rows["iq_t0_s"][i, t, s]), tuple(short[:half]),
                            tuple(short[half:]))}


def import_arrays(ms: MeasurementSet, where: list[tuple[int, int, int, int]],
                  shape: tuple[int, int, int]) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
    """The capture arrays of an import and the ``iq`` attributes, or ``({}, None)`` without captures.

    Parameters
    ----------
    ms : MeasurementSet
    where : list of (sample, report, step, slot)
        Where each report of ``ms`` went in the ``[N, T, S]`` arrays (row = sample).
    shape : (N, T, S)
    """
    placed = [(i, j, k, s) for i, j, k, s in where if ms.samples[i].reports[j].iq is not None]
    if not placed:
        return {}, None
    first = ms.samples[placed[0][0]].reports[placed[0][1]].iq
    rate, size = first.sample_rate_hz, len(first.i)
    out = {"iq": np.zeros((*shape, 2, size), np.int16), "iq_scale": np.full(shape, np.nan, np.float32),
           "iq_t0_s": np.full(shape, np.nan, np.float64), "mask_iq": np.zeros(shape, bool)}
    for i, j, k, s in placed:
        capture = ms.samples[i].reports[j].iq
        if capture.sample_rate_hz != rate or len(capture.i) != size:
            msg = (f"expected every capture at {rate:g} Hz with {size} samples (as the first), got "
                   f"{capture.sample_rate_hz:g} Hz with {len(capture.i)}")
            raise MeasurementFormatError(msg, path=f"samples[{i}].reports[{j}].iq")
        codes, scale = iq.quantize(np.asarray(capture.i) + 1j * np.asarray(capture.q), adc="int16")
        out["iq"][i, k, s], out["iq_scale"][i, k, s] = codes, scale
        out["iq_t0_s"][i, k, s], out["mask_iq"][i, k, s] = capture.t0_s, True
    attrs = {"sample_rate_hz": rate, "samples": size, "adc": "int16",
             "units": "iq codes x iq_scale = the file's i + j q (sqrt(mW) when written by RFLocal); "
                      "iq_t0_s: capture start, common clock"}
    return out, attrs


def file_captures(samples: list[Any], slot_of: dict[str, int | None], shape: tuple[int, int]) -> dict[str, Any]:
    """The ``Inputs`` capture fields (``iq``, ``iq_scale``, ``iq_t0_s``, ``iq_sample_rate_hz``) of a file's samples.

    Per sample the captures of node reports at its last report time, in the node's slot; a
    capture of another sample rate or length than the file's first is left out. ``{}`` when the
    file has none.

    Parameters
    ----------
    samples : list of Sample
        The samples, in the rows of the inputs.
    slot_of : dict
        Node id -> slot.
    shape : (N, S)
    """
    first = next((r.iq for sample in samples for r in sample.reports if r.iq is not None and r.node is not None), None)
    if first is None:
        return {}
    rate, size = first.sample_rate_hz, len(first.i)
    out = {"iq": np.zeros((*shape, 2, size), np.int16), "iq_scale": np.full(shape, np.nan),
           "iq_t0_s": np.full(shape, np.nan), "iq_sample_rate_hz": float(rate)}
    where, captures = [], []
    for row, sample in enumerate(samples):
        last = max(float(np.float32(r.t_s)) for r in sample.reports)
        for r in sample.reports:
            if r.iq is None or r.node is None or float(np.float32(r.t_s)) != last or slot_of.get(r.node) is None:
                continue
            if r.iq.sample_rate_hz != rate or len(r.iq.i) != size:
                continue
            where.append((row, slot_of[r.node]))
            captures.append(r.iq)
    if captures:  # one array and one quantization for all (a single-sample request is on the latency path)
        rows, slots = np.array(where).T
        codes, scales = iq.quantize_rows(np.array([c.i for c in captures]) + 1j * np.array([c.q for c in captures]),
                                         adc="int16")
        out["iq"][rows, slots], out["iq_scale"][rows, slots] = codes, scales
        out["iq_t0_s"][rows, slots] = [c.t0_s for c in captures]
    return out
