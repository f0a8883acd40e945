"""Physics of the PHY/MAC reports (rflocal_core.phy): RSRQ, SINR, CQI, rank, beams, Doppler."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rflocal_core import phy
from rflocal_core.errors import InvalidInputError

NUM = phy.Numerology(scs_khz=30, n_rb=51)
NO_NOISE = -np.inf


def one_cell_rsrq(load: float) -> float:
    rsrp = np.array([-80.0])
    rssi = phy.rssi_dbm(rsrp, np.array([load]), noise_per_re_dbm=NO_NOISE, n_rb=NUM.n_rb)
    return float(phy.rsrq_db(rsrp, rssi, n_rb=NUM.n_rb)[0])


def test_rsrq_is_n_rsrp_over_rssi_by_construction():
    rng = np.random.default_rng(0)
    rsrp = rng.uniform(-120, -70, size=(50, 5))
    load = rng.uniform(0, 1, size=(50, 5))
    noise = NUM.noise_per_re_dbm(7.0)
    rssi = phy.rssi_dbm(rsrp, load, noise_per_re_dbm=noise, n_rb=NUM.n_rb)
    rsrq = phy.rsrq_db(rsrp, rssi[:, None], n_rb=NUM.n_rb)
    # RSSI from its definition: N resource blocks, RS REs always on, data REs with the load, plus noise.
    lin = 10 ** (rsrp / 10)
    rssi_mw = NUM.n_rb * ((lin * (2 + 10 * load)).sum(-1) + 12 * 10 ** (noise / 10))
    np.testing.assert_allclose(10 ** (rsrq / 10), NUM.n_rb * lin / rssi_mw[:, None], rtol=1e-9)


def test_one_cell_no_noise_rsrq_rs_only_and_full_load():
    assert one_cell_rsrq(0.0) == pytest.approx(-3.01, abs=0.01)  # 2 RS REs of 12 in an RS symbol
    assert one_cell_rsrq(1.0) == pytest.approx(-10.79, abs=0.01)  # all 12 REs: 10·log10(1/12)
    loads = np.linspace(0, 1, 11)
    assert np.all(np.diff([one_cell_rsrq(x) for x in loads]) < 0)


def test_rsrq_falls_towards_floor_as_neighbours_load_rises():
    rsrp = np.full(7, -80.0)  # serving and six neighbours heard as strongly
    values = []
    for neighbour_load in np.linspace(0, 1, 6):
        load = np.array([1.0] + [neighbour_load] * 6)
        rssi = phy.rssi_dbm(rsrp, load, noise_per_re_dbm=NO_NOISE, n_rb=NUM.n_rb)
        values.append(float(phy.rsrq_db(rsrp, rssi, n_rb=NUM.n_rb)[0]))
    assert values[0] == pytest.approx(10 * np.log10(1 / (12 + 6 * 2)), abs=1e-6)
    assert np.all(np.diff(values) < 0)
    assert values[-1] == pytest.approx(-19.24, abs=0.01)  # 1/84
    # the report keeps 0.5 dB steps and stops at the floor of NR's range
    assert phy.quantize(values[-1], phy.RATIO_STEP_DB, phy.RSRQ_RANGE_DB) == -19.0
    assert phy.quantize(values[-1] - 30.0, phy.RATIO_STEP_DB, phy.RSRQ_RANGE_DB) == -43.0


def test_sinr_falls_as_a_neighbours_load_rises():
    rsrp = np.array([-80.0, -86.0])
    sinr = [float(phy.sinr_db(rsrp, np.array([0.5, x]), noise_per_re_dbm=NUM.noise_per_re_dbm(7.0))[0])
            for x in np.linspace(0, 1, 6)]
    assert np.all(np.diff(sinr) < 0)
    # full load, no noise: the power ratio
    full = phy.sinr_db(rsrp, np.array([1.0, 1.0]), noise_per_re_dbm=NO_NOISE)
    assert full[0] == pytest.approx(6.0)


def test_cqi_monotone_in_sinr_and_table_ends():
    sinr = np.linspace(-20, 40, 601)
    cqi = phy.cqi_from_sinr(sinr)
    assert np.all(np.diff(cqi.astype(int)) >= 0)
    assert cqi[0] == 0 and cqi[-1] == 15
    assert set(np.unique(cqi)) == set(range(16))
    assert phy.cqi_from_sinr(np.array([np.nan]))[0] == -1
    # each threshold is where its CQI starts
    assert list(phy.cqi_from_sinr(np.array(phy.CQI_SINR_DB))) == list(range(1, 16))


def single_path(bearing_deg: float, elevation_deg: float = -5.0):
    """Arrays of one LoS link [1, 1, 1] leaving the site at a compass bearing."""
    az = np.radians(bearing_deg)
    el = np.radians(elevation_deg)
    u_t = np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])
    shape = (1, 1, 1)
    return (np.full(shape, 1e-5 + 0j), np.full(shape, 1e-6), np.ones(shape, bool),
            u_t.reshape(1, 1, 1, 3), -u_t.reshape(1, 1, 1, 3))


@pytest.mark.parametrize("sectors", [[30.0], list(phy.OMNI_SECTORS_DEG)])
def test_los_best_beam_points_within_half_a_beam_width(sectors):
    setup = phy.ArraySetup(beams=8)
    centre = sectors[0]
    for bearing in np.linspace(centre - 55, centre + 55, 23):
        ch = phy.link_channel(*single_path(bearing), sectors=[sectors], setup=setup, bandwidth_hz=20e6)
        best = int(np.argmax(ch.beam_gain[0, 0]))
        sector, beam = divmod(best, setup.beams)
        pointed = phy.beam_bearing_deg(beam, beams=setup.beams, sector_azimuth_deg=sectors[sector])
        off = np.radians((bearing - sectors[sector] + 180) % 360 - 180)
        # half the beam width in sin(ψ) is 1/B; the elevation shrinks the projection by cos(el)
        s_true = np.sin(off) * np.cos(np.radians(5.0))
        s_beam = np.sin(np.radians((pointed - sectors[sector] + 180) % 360 - 180))
        assert abs(s_true - s_beam) <= 1 / setup.beams + 1e-9, (bearing, pointed)
        if len(sectors) == 1:
            assert abs((pointed - bearing + 180) % 360 - 180) < 15.0
        # the best beam gains B (9 dB for 8 elements) times the element's gain, less at most the
        # DFT codebook's scalloping loss (3.9 dB halfway between two beams)
        element = phy.element_gain(single_path(bearing)[3][0, 0, 0], phy.sector_frame(sectors[sector])[0])
        assert 0.4 * setup.beams * element < ch.beam_gain[0, 0, best] <= setup.beams * element + 1e-9


def test_beams_behind_a_sector_panel_are_30_db_down():
    setup = phy.ArraySetup()
    ch = phy.link_channel(*single_path(210.0), sectors=[[30.0]], setup=setup, bandwidth_hz=20e6)
    assert np.all(ch.beam_gain[0, 0] <= setup.beams * 10 ** -3.0 + 1e-12)
    boresight = phy.sector_frame(30.0)[0]
    assert phy.element_gain(boresight, boresight) == pytest.approx(1.0)
    side = phy.sector_frame(30.0 + 65.0 / 2)[0]
    assert 10 * np.log10(phy.element_gain(side, boresight)) == pytest.approx(-3.0)  # half-power beam width


def test_rank_one_path_is_one_two_separated_paths_at_high_sinr_is_two():
    setup = phy.ArraySetup(beams=8, gnb_antennas=4, ue_antennas=2)
    a, tau, valid, u_t, u_r = single_path(10.0)
    one = phy.link_channel(a, tau, valid, u_t, u_r, sectors=[[0.0]], setup=setup, bandwidth_hz=20e6)
    gain = phy.element_gain(u_t[0, 0, 0], phy.sector_frame(0.0)[0])
    assert one.eig[0, 0, 0] == pytest.approx(8.0 * gain)  # 2 x 4 array gain times the element's
    assert one.eig[0, 0, 1] == pytest.approx(0.0, abs=1e-9)
    assert phy.rank_indicator(one.eig, np.array([[30.0]]), gnb_antennas=4)[0, 0] == 1
    second = single_path(-40.0)
    u_r2 = -phy.direction(np.radians(90.0), np.radians(200.0)).reshape(1, 1, 1, 3)  # arrives from elsewhere
    two = phy.link_channel(np.concatenate([a, second[0] * np.exp(1j)], -1),
                           np.concatenate([tau, second[1] * 1.3], -1), np.ones((1, 1, 2), bool),
                           np.concatenate([u_t, second[3]], 2), np.concatenate([u_r, u_r2], 2),
                           sectors=[[0.0]], setup=setup, bandwidth_hz=20e6)
    assert two.eig[0, 0, 1] > 0.5
    assert phy.rank_indicator(two.eig, np.array([[30.0]]), gnb_antennas=4)[0, 0] == 2
    assert phy.rank_indicator(two.eig, np.array([[-5.0]]), gnb_antennas=4)[0, 0] == 1
    assert phy.rank_indicator(two.eig, np.array([[np.nan]]), gnb_antennas=4)[0, 0] == -1


def test_doppler_towards_and_across_the_source():
    towards = np.array([0.0, 1.0, 0.0])  # the wave arrives from the north
    f = phy.doppler_hz(np.array([0.0, 10.0, 0.0]), towards, freq_hz=3.5e9)
    assert f == pytest.approx(10.0 * 3.5e9 / 299_792_458.0)
    assert phy.doppler_hz(np.array([10.0, 0.0, 0.0]), towards, freq_hz=3.5e9) == pytest.approx(0.0)
    assert phy.doppler_hz(np.array([0.0, -10.0, 0.0]), towards, freq_hz=3.5e9) < 0


def test_numerology_checks_name_the_option():
    assert phy.Numerology(scs_khz=15, n_rb=106).bandwidth_hz == pytest.approx(19.08e6)
    with pytest.raises(InvalidInputError, match="phy_scs_khz"):
        phy.Numerology(scs_khz=25, n_rb=51)
    with pytest.raises(InvalidInputError, match="phy_n_rb"):
        phy.Numerology(scs_khz=30, n_rb=0)


def test_reports_mask_missing_reports_and_mark_the_serving_cell():
    n, t, s = 2, 3, 3
    rx = np.array([-60.0, -70.0, -75.0])[None, None, :].repeat(n, 0).repeat(t, 1)
    rx[1, :, 2] = np.nan  # not heard
    present = np.isfinite(rx)
    present[0, 2, :] = False  # no report at that step
    setup = phy.ArraySetup()
    chans = [phy.link_channel(*single_path(b), sectors=[[0.0]], setup=setup, bandwidth_hz=20e6)
             for b in (-20.0, 0.0, 20.0)]
    cat = {k: np.concatenate([getattr(c, k) for c in chans], 1)[0][None, None].repeat(n, 0).repeat(t, 1)
           for k in ("beam_gain", "eig", "arrival_dir")}
    out = phy.phy_reports(rx_power_dbm=rx, load=np.full((n, s), 0.5), channel=phy.LinkChannel(**cat),
                          velocity_m_s=np.zeros((n, t, 3)), present=present, numerology=NUM, noise_figure_db=7.0,
                          setup=setup, freq_hz=3.5e9, neighbours=1)
    assert out.serving[0, 0].tolist() == [1, 0, 0]
    assert out.neighbour_rank[0, 0].tolist() == [0, 1, -1]
    assert np.isnan(out.rsrq_db[0, 2]).all() and (out.cqi[0, 2] == -1).all() and np.isnan(out.rssi_dbm[0, 2])
    assert np.isnan(out.sinr_db[1, :, 2]).all() and (out.beam_id[1, :, 2] == -1).all()
    assert np.all(out.rsrq_db[present] % 0.5 == 0) and np.all(out.rsrp_dbm[present] % 1 == 0)
    assert np.all(out.beam_rsrp_dbm[present] > out.rsrp_dbm[present])  # beamforming gain
    assert out.doppler_hz[present].tolist() == [0.0] * int(present.sum())
    assert (out.beam_top_ids[present][:, 0] == out.beam_id[present]).all()


def test_feature_dropout_removes_the_measured_fields_at_its_rate_and_keeps_the_integer_reports():
    n, t, s = 400, 2, 3
    rx = np.array([-60.0, -70.0, -75.0])[None, None, :].repeat(n, 0).repeat(t, 1)
    present = np.ones((n, t, s), bool)
    setup = phy.ArraySetup()
    chans = [phy.link_channel(*single_path(b), sectors=[[0.0]], setup=setup, bandwidth_hz=20e6)
             for b in (-20.0, 0.0, 20.0)]
    cat = {k: np.concatenate([getattr(c, k) for c in chans], 1)[0][None, None].repeat(n, 0).repeat(t, 1)
           for k in ("beam_gain", "eig", "arrival_dir")}
    full = phy.phy_reports(rx_power_dbm=rx, load=np.full((n, s), 0.5), channel=phy.LinkChannel(**cat),
                           velocity_m_s=np.ones((n, t, 3)), present=present, numerology=NUM, noise_figure_db=7.0,
                           setup=setup, freq_hz=3.5e9, neighbours=2)
    assert phy.drop_fields(full, 0.0, np.random.default_rng(0)) is full
    out = phy.drop_fields(full, 0.3, np.random.default_rng(0))
    for key in phy.DROPOUT_FIELDS:
        assert np.isfinite(getattr(full, key)).all(), key
        assert np.isnan(getattr(out, key)).mean() == pytest.approx(0.3, abs=0.03), key
        kept = np.isfinite(getattr(out, key))
        np.testing.assert_array_equal(getattr(out, key)[kept], getattr(full, key)[kept])
    for key in ("cqi", "ri", "beam_id", "serving", "neighbour_rank", "rsrp_dbm"):
        np.testing.assert_array_equal(getattr(out, key), getattr(full, key))
    # the fields are dropped independently of one another
    assert 0.05 < (np.isnan(out.rsrq_db) & np.isnan(out.sinr_db)).mean() < 0.15


def phy_document(**report) -> dict:
    return {"format": "rflocal-measurements/1", "mode": "ue",
            "nodes": [{"id": "c1", "x_m": 0.0, "y_m": 0.0}, {"id": "c2", "x_m": 100.0, "y_m": 0.0}],
            "samples": [{"id": "s1", "truth": {"x_m": 10.0, "y_m": 5.0},
                         "reports": [{"node": "c1", "rss_dbm": -80.0, **report},
                                     {"node": "c2", "rss_dbm": -95.0, "serving": 0}]}]}


def test_measurement_format_carries_phy_fields_and_checks_their_ranges():
    from rflocal_core.measurements import MeasurementFormatError, dumps_measurements, parse_measurements

    fields = {"rsrq_db": -11.5, "sinr_db": 7.5, "cqi": 8, "ri": 2, "beam_id": 13, "beam_rsrp_dbm": -98.0,
              "doppler_hz": -42.0, "serving": 1}
    ms = parse_measurements(phy_document(**fields))
    first, second = ms.samples[0].reports
    assert first.phy == fields and second.phy == {"serving": 0}
    assert parse_measurements(json.loads(dumps_measurements(ms))) == ms  # written and read back
    with pytest.raises(MeasurementFormatError, match=r"samples\[0\]\.reports\[0\]\.cqi.*integer in \[0, 15\].*16"):
        parse_measurements(phy_document(cqi=16))
    with pytest.raises(MeasurementFormatError, match=r"reports\[0\]\.rsrq_db.*\[-43, 20\]"):
        parse_measurements(phy_document(rsrq_db=-50))
    with pytest.raises(MeasurementFormatError, match=r"reports\[0\]\.serving"):
        parse_measurements(phy_document(serving=2))


def test_csv_import_vocabulary_reads_phy_columns():
    from rflocal_core.measurements.columns import guess_columns
    from rflocal_core.measurements.table import read_table

    header = ["sample", "PCI", "lat", "lon", "RSRP", "RSRQ", "SINR", "CQI", "RI", "SSB index", "L1-RSRP",
              "Doppler", "serving"]
    columns = guess_columns(header)
    assert {k: columns[k] for k in ("rss_dbm", "rsrq_db", "sinr_db", "cqi", "ri", "beam_id", "beam_rsrp_dbm",
                                    "doppler_hz", "serving")} == {
        "rss_dbm": "RSRP", "rsrq_db": "RSRQ", "sinr_db": "SINR", "cqi": "CQI", "ri": "RI", "beam_id": "SSB index",
        "beam_rsrp_dbm": "L1-RSRP", "doppler_hz": "Doppler", "serving": "serving"}
    rows = [
        "1,c1,48.0,11.0,-80,-11.5,7.5,8,2,13,-71,12.0,1",
        "1,c2,48.0,11.0,-95,-18,-3,2,1,5,-88,,0",
        "1,c2,48.0,11.0,-97,-18,-3,3,1,5,-88,,0",  # repeated: merged (median, integers rounded)
        "2,c1,48.001,11.0,-82,-12,6,99,1,13,-73,3.0,1",  # CQI 99 out of range: that value removed
    ]
    table = read_table(("\n".join([",".join(header), *rows]) + "\n").encode(), kind="csv", columns=columns)
    first, second = table.measurements.samples
    by_node = {r.node: r for r in first.reports}
    assert by_node["c1"].phy == {"rsrq_db": -11.5, "sinr_db": 7.5, "cqi": 8, "ri": 2, "beam_id": 13,
                                 "beam_rsrp_dbm": -71.0, "doppler_hz": 12.0, "serving": 1}
    assert by_node["c2"].cqi in (2, 3) and by_node["c2"].doppler_hz is None and by_node["c2"].serving == 0
    assert second.reports[0].cqi is None and second.reports[0].rsrq_db == -12.0
    assert any(issue.reason == "cqi_out_of_range" for issue in table.report.issues)


def test_a3_hands_over_after_the_time_to_trigger_and_a5_below_threshold():
    steps = np.ones((1, 5), bool)
    # cell 1 rises 4 dB above cell 0 from step 1 on: A3 (3 dB) fires after 2 reports, at step 2
    rsrp = np.array([[[-80.0, -85.0], [-80.0, -76.0], [-80.0, -76.0], [-80.0, -76.0], [-80.0, -76.0]]])
    serving, a3, a5 = phy.serving_along(rsrp, steps)
    assert serving[0].tolist() == [0, 0, 1, 1, 1]
    assert a3[0, :, 1].tolist() == [False, False, True, False, False] and not a3[0, :, 0].any() and not a5.any()
    # 2 dB better is within the offset: no event, no handover (the serving cell is sticky)
    serving, a3, _ = phy.serving_along(rsrp - np.array([0.0, 2.0]), steps)
    assert serving[0].tolist() == [0] * 5 and not a3.any()
    # a gap in the sequence keeps the state; one report above the offset is not enough
    gap = np.array([[True, True, False, True, True]])
    flicker = np.array([[[-80.0, -85.0], [-80.0, -76.0], [np.nan, np.nan], [-80.0, -85.0], [-80.0, -76.0]]])
    serving, a3, _ = phy.serving_along(flicker, gap)
    assert serving[0].tolist() == [0, 0, -1, 0, 0] and not a3.any()
    # A5: the serving cell falls below -110 dBm with a neighbour above -105 dBm (8 dB better: no A3 at 10 dB)
    weak = np.array([[[-100.0, -104.0], [-112.0, -104.0], [-112.0, -104.0], [-112.0, -104.0]]])
    serving, a3, a5 = phy.serving_along(weak, np.ones((1, 4), bool), offset_db=10.0)
    assert a5[0, :, 1].tolist() == [False, False, True, False] and serving[0].tolist() == [0, 0, 1, 1]
    assert not a3.any()
