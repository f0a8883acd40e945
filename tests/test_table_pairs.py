"""Drive-test exports: the cells a phone heard as column pairs (``node_pairs``: serving ``PSC``/``Level``, neighbours
``NCell1``/``NRxLev1`` ...), read as the long table they were written from. The files are built from the real Duke
CBRS drive test (``../shared/data/real/duke_cbrs``) in the layout of G-NetTrack's export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from rflocal_core.dataset import open_dataset
from rflocal_core.errors import InvalidInputError
from rflocal_core.measurements.table import TableFormatError, read_table
from tests.page_support import import_tab, import_with

DUKE_COLUMNS = {"node": "PCI", "lat": "latitude", "lon": "longitude", "rss_dbm": "rsrp"}
DUKE_GROUP = ["latitude", "longitude", "device"]
PAIRS = ["PSC:Level", "NCell*:NRxLev*"]
POSITIONS = {"lat": "Latitude", "lon": "Longitude"}
#: Cell labels as the numeric PCIs a phone reports.
PCI = {label: 100 + k for k, label in enumerate("ABCDEF")}


def _duke(shared_data: Path, rows: int) -> pd.DataFrame:
    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    frame = pd.read_csv(src, nrows=rows)
    return frame.assign(PCI=frame.PCI.map(PCI))


def _export(frame: pd.DataFrame, neighbours: int = 5) -> pd.DataFrame:
    """One row per position and phone: the strongest cell serving, the others as neighbours, with the app's other
    columns around them (NCellName* would match NCell* but has no NRxLev partner)."""
    rows = []
    for (lat, lon, device), g in frame.groupby(DUKE_GROUP, sort=False):
        g = g.sort_values("rsrp", ascending=False, kind="stable")
        row = {"Timestamp": "2019.07.16_10.45.21", "Longitude": lon, "Latitude": lat, "CellID": None,
               "PSC": g.PCI.iloc[0], "NetworkTech": "LTE", "Level": g.rsrp.iloc[0], "Qual": -10, "Device": device}
        for k in range(1, neighbours + 1):
            heard = k < len(g)
            row |= {f"NTech{k}": "LTE" if heard else None, f"NCellName{k}": None,
                    f"NCell{k}": g.PCI.iloc[k] if heard else None, f"NARFCN{k}": 55340 if heard else None,
                    f"NRxLev{k}": g.rsrp.iloc[k] if heard else None}
        rows.append(row)
    return pd.DataFrame(rows)


def _content(table: Any) -> list[tuple]:
    return sorted((s.truth.lat, s.truth.lon, tuple(sorted((r.node, r.rss_dbm) for r in s.reports)))
                  for s in table.measurements.samples)


def test_a_drive_test_export_reads_as_the_long_table_it_came_from(shared_data: Path, tmp_path: Path) -> None:
    frame = _duke(shared_data, 3000)
    frame.to_csv(tmp_path / "long.csv", index=False)
    ref = read_table(tmp_path / "long.csv", columns=DUKE_COLUMNS, group_by=DUKE_GROUP)
    export = _export(frame)
    export.to_csv(tmp_path / "gnet.txt", sep="\t", index=False)  # G-NetTrack's log: tab-separated .txt
    export.to_parquet(tmp_path / "gnet.parquet")  # ids stored as floats (101.0), the empty neighbours as NaN
    assert export["NCell1"].dtype == np.float64
    for name in ("gnet.txt", "gnet.parquet"):
        table = read_table(tmp_path / name, columns=POSITIONS, node_pairs=PAIRS)
        assert _content(table) == _content(ref), name
        assert [n.id for n in table.measurements.nodes] == [str(p) for p in PCI.values()]  # "101", not "101.0"
        assert table.report.samples == ref.report.samples == len(export)
        # Duke repeats a cell at one position and phone: the long table's duplicate rows are neighbours here
        assert table.report.to_dict()["issues"]["duplicate_reports_merged"]["count"] == \
            ref.report.to_dict()["issues"]["duplicate_reports_merged"]["count"] > 0
        assert table.input_info["node_pairs"][:2] == ["PSC:Level", "NCell1:NRxLev1"]
        assert len(table.input_info["node_pairs"]) == 6
        assert "node columns in pairs (6 pairs: PSC:Level, NCell1:NRxLev1" in table.measurements.notes[0]


def test_messy_pairs_are_counted_and_bad_options_refused(shared_data: Path, tmp_path: Path) -> None:
    frame = _export(_duke(shared_data, 400)).astype(object)
    frame.loc[3, "PSC"] = None  # a serving level without its cell
    frame.loc[4, "Level"] = "abc"
    frame.loc[5, "PSC"] = -1  # the app's "unknown cell"
    frame.loc[6, ["NCell1", "NRxLev1"]] = [frame.loc[6, "PSC"], frame.loc[6, "Level"]]  # serving cell repeated
    frame.loc[[0, 1, 2], "NRxLev2"] = None  # a neighbour without its level: not heard
    src = tmp_path / "messy.csv"
    frame.to_csv(src, index=False)
    clean = read_table(src, columns=POSITIONS, node_pairs=PAIRS, missing=["-1"])
    issues = clean.report.to_dict()["issues"]
    assert issues["pair_without_node"]["rows"] == [4, 6] and issues["pair_without_node"]["count"] == 2
    assert issues["rss_dbm_not_a_number"]["values"] == ["abc"]
    assert 7 in issues["duplicate_reports_merged"]["rows"]
    row7 = next(s for s in clean.measurements.samples if s.id == "row-7")
    assert [r.node for r in row7.reports] == [str(frame.loc[6, "PSC"])]
    with pytest.raises(TableFormatError, match="pair_without_node"):
        read_table(src, columns=POSITIONS, node_pairs=PAIRS, missing=["-1"], strict=True)
    for pairs, error in ((["PSC"], "expected ID:VALUE"), (["NCell*:NRxLev"], "one \\* each"),
                         (["PSC:Level", "PSC:Qual"], "column 'PSC' is in two pairs")):
        with pytest.raises(InvalidInputError, match=error):
            read_table(src, columns=POSITIONS, node_pairs=pairs)
    with pytest.raises(TableFormatError, match="no column pair matches 'Cell\\*:RSRP\\*'.*'NRxLev1'"):
        read_table(src, columns=POSITIONS, node_pairs=["Cell*:RSRP*"])
    with pytest.raises(InvalidInputError, match="not both"):
        read_table(src, columns=POSITIONS, node_pairs=PAIRS, node_columns=["NRxLev*"])
    with pytest.raises(InvalidInputError, match="columns: rss_dbm: in a wide table"):
        read_table(src, columns={**POSITIONS, "rss_dbm": "Level"}, node_pairs=PAIRS)


def test_pairs_import_train_and_predict_on_the_command_line(shared_data: Path, tmp_path: Path, workspace: Path,
                                                            run_cli: Any) -> None:
    frame = _duke(shared_data, 3000)
    long_src, pairs_src = tmp_path / "long.csv", tmp_path / "gnet.txt"
    frame.to_csv(long_src, index=False)
    _export(frame).to_csv(pairs_src, sep="\t", index=False)
    flags = ["--columns", "lat=Latitude,lon=Longitude", "--node-pairs", "PSC:Level,NCell*:NRxLev*"]
    proc = run_cli(["data", "import", str(pairs_src), "--name", "gnet", *flags], workspace)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["nodes"] == 6 and out["table"]["rows_used"] == out["samples"] == len(_export(frame))
    proc = run_cli(["train", "--dataset", "gnet", "--model", "knn"], workspace)
    run = json.loads(proc.stdout)["run_id"]
    by_pairs = run_cli(["predict", "--run", run, "--input", str(pairs_src), *flags], workspace)
    by_rows = run_cli(["predict", "--run", run, "--input", str(long_src), "--columns",
                       "node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp", "--group-by", ",".join(DUKE_GROUP)],
                      workspace)
    errors = [sorted(p["error_m"] for p in json.loads(proc.stdout)["predictions"]) for proc in (by_pairs, by_rows)]
    assert len(errors[0]) == out["samples"] and errors[0] == pytest.approx(errors[1], abs=1e-6)
    bad = run_cli(["data", "import", str(pairs_src), "--name", "gnet2", "--columns", "lat=Latitude,lon=Longitude",
                   "--node-pairs", "PSC"], workspace)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: node_pairs: expected ID:VALUE, two column names or two patterns with one * each "
        "(e.g. NCell*:NRxLev*), got 'PSC'"]


def test_page_imports_a_drive_test_export(shared_data: Path, workspace: Path) -> None:
    """The mapping's "Node column pairs (drive test)" on the import tab."""
    export = _export(_duke(shared_data, 600))
    at = import_tab("gnet.csv", export.to_csv(index=False).encode(), "text/csv")
    at.text_input(key="dg_tab_pairs").set_value("PSC:Level, NCell*:NRxLev*")
    at.text_input(key="dg_import_name").set_value("gnet-page")
    at.button(key="dg_import").click()
    at.run()  # the page guessed the app's Timestamp column as the time, written its own way
    assert not at.exception and "column 'Timestamp' (time) holds neither numbers" in at.error[0].value
    import_with(at, dg_tab_time_format="%Y.%m.%d_%H.%M.%S")
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith(f"Imported **gnet-page**: {len(export)} samples")
    assert open_dataset("gnet-page").attrs["input"]["node_pairs"][0] == "PSC:Level"
    at.text_input(key="dg_tab_pairs").set_value("PSC:Nope")
    at.button(key="dg_import").click()
    at.run()
    assert not at.exception and "no column pair matches 'PSC:Nope'" in at.error[0].value


def test_a_cell_list_in_excel_names_the_cells_as_the_export_does(shared_data: Path, tmp_path: Path) -> None:
    """Site lists come as workbooks, or as CSVs whose numeric ids went through a float (101.0): both name the
    export's cells 100 ... 105 and give them their positions."""
    export = _export(_duke(shared_data, 1500))
    sites = pd.DataFrame({"PCI": [float(p) for p in PCI.values()], "Latitude": 36.0 + np.arange(6) * 1e-3,
                          "Longitude": -78.93 - np.arange(6) * 1e-3})
    sites.to_excel(tmp_path / "sites.xlsx", index=False)
    sites.to_csv(tmp_path / "sites.csv", index=False)
    assert "100.0," in (tmp_path / "sites.csv").read_text()
    export.to_csv(tmp_path / "gnet.csv", index=False)
    for name in ("sites.xlsx", "sites.csv"):
        table = read_table(tmp_path / "gnet.csv", columns=POSITIONS, node_pairs=PAIRS, nodes=tmp_path / name)
        assert [(n.id, n.lat, n.lon) for n in table.measurements.nodes] == \
            [(str(int(p)), lat, lon) for p, lat, lon in sites.itertuples(index=False)], name
        assert not table.report.nodes_unknown_position
    with pytest.raises(InvalidInputError, match="nodes: expected a .json nodes table or one ending in .csv"):
        read_table(tmp_path / "gnet.csv", columns=POSITIONS, node_pairs=PAIRS, nodes=tmp_path / "sites.xls")


def test_a_second_file_or_sheet_gets_its_own_column_guesses(shared_data: Path, tmp_path: Path) -> None:
    """A file without a time column, then the drive-test export with one (and a workbook whose cover sheet maps
    nothing, then its data sheet): each header's guesses, not the columns the last one left unmapped."""
    frame = _duke(shared_data, 300)
    at = import_tab("walk.csv", frame.to_csv(index=False).encode(), "text/csv")
    assert at.selectbox(key="dg_tab_time").value == "(none)" and at.selectbox(key="dg_tab_node").value == "PCI"
    at.file_uploader(key="dg_import_file").set_value(("gnet.csv", _export(frame).to_csv(index=False).encode(),
                                                      "text/csv"))
    at.run()
    assert at.selectbox(key="dg_tab_time").value == "Timestamp" and at.selectbox(key="dg_tab_lat").value == "Latitude"
    with pd.ExcelWriter(tmp_path / "book.xlsx") as book:
        pd.DataFrame({"Drive test": ["Duke campus"]}).to_excel(book, sheet_name="Notes", index=False)
        frame.to_excel(book, sheet_name="Walk", index=False)
    at.file_uploader(key="dg_import_file").set_value(("book.xlsx", (tmp_path / "book.xlsx").read_bytes(),
                                                      "application/vnd.openxmlformats-officedocument.spreadsheetml"
                                                      ".sheet"))
    at.run()
    assert at.selectbox(key="dg_tab_node").value == "(none)"
    at.selectbox(key="dg_tab_sheet").set_value("Walk")
    at.run()
    assert not at.exception and at.selectbox(key="dg_tab_node").value == "PCI"
    assert at.multiselect(key="dg_tab_group").value == ["latitude", "longitude", "device"]


def test_ids_written_as_floats_are_the_integers_and_other_ids_stay_as_written(tmp_path: Path) -> None:
    src = tmp_path / "ids.csv"
    src.write_text("sample,node,rss,lat,lon\ns1,101.0,-80,36.0,-78.9\ns1,101,-82,36.0,-78.9\ns1,0042,-90,36.0,-78.9\n"
                   "s1,FF01,-95,36.0,-78.9\ns2,1e3,-99,36.0,-78.9\n", encoding="utf-8")
    table = read_table(src, columns={"sample": "sample", "node": "node", "rss_dbm": "rss", "lat": "lat", "lon": "lon"})
    assert sorted(n.id for n in table.measurements.nodes) == ["0042", "101", "1e3", "FF01"]
    assert table.report.to_dict()["issues"]["duplicate_reports_merged"]["rows"] == [2]  # 101.0 and 101: one node
