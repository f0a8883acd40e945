"""Scene Builder: footprints from a procedural city, an OSM/GeoJSON file or a map box."""

from __future__ import annotations

import html

import pandas as pd
import pydeck as pdk
import streamlit as st

from rflocal_core import scene as sc
from rflocal_core.access import allowed
from rflocal_core.errors import InvalidInputError, RFLocalInputError
from rflocal_core.scene.footprints import save_upload
from rflocal_core.scene.importer import SceneImportConfig, bundled_scenes, import_scene, parse_origin, save_scene_zip
from rflocal_core.scene.osm_xml import describe as describe_footprints
from rflocal_core.workspace import name_from_file

from pages.views import boxmap
from pages.views.scene_tiles import render_tiles_tab
from pages.views.signin import current_user
from pages.views.widgets import choice, number, radio, text, toggle

SOURCES = {"Procedural city": "procedural", "OSM / GeoJSON file": "file", "Box on a map (online)": "bbox",
           "Sionna / Mitsuba scene": "sionna_xml"}
SITE_RGB = [230, 30, 30]
DEFAULT_NAME = "demo"
XML_KINDS = ("Bundled with Sionna RT", "Path on this machine", "Upload a .zip (XML + meshes)")

st.title("Scene Builder")
st.caption(
    "Turn building footprints into a Sionna RT scene: closed meshes, ITU materials, a ground plane "
    "and the known-position radio sites."
)

user = current_user()  # passed to every core call that changes the workspace


def render_scene(name: str, *, key: str) -> None:
    """3D view and summary of a built scene."""
    colour_by = st.radio("Colour buildings by", ["height", "material"], horizontal=True, key=f"{key}-colour")
    view = sc.view_data(name, colour_by=colour_by)
    meta = view["meta"]
    buildings = pdk.Layer(
        "PolygonLayer", data=view["buildings"], get_polygon="polygon", extruded=True, get_elevation="height_m",
        get_fill_color="colour", get_line_color=[40, 40, 40], pickable=True, auto_highlight=True,
    )
    # A site is a red dot at its antenna (seen above the roofs at any zoom) on a thin red mast.
    masts = pdk.Layer(
        "ColumnLayer", data=view["sites"], get_position=["lon", "lat"], get_elevation="z_m", radius=1.5,
        get_fill_color=SITE_RGB, pickable=True,
    )
    antennas = pdk.Layer(
        "ScatterplotLayer", data=view["sites"], get_position=["lon", "lat", "z_m"], get_radius=4,
        radius_min_pixels=5, stroked=True, get_line_color=[255, 255, 255], line_width_min_pixels=1,
        get_fill_color=SITE_RGB, billboard=True, pickable=True,
    )
    lat, lon = view["centre"]
    deck = pdk.Deck(
        layers=[buildings, masts, antennas], map_style=None,
        initial_view_state=pdk.ViewState(latitude=lat, longitude=lon, zoom=15.5, pitch=50, bearing=20),
        tooltip={"text": "{material} {height_m} m {id}"},
    )
    st.pydeck_chart(deck, height=520)
    st.markdown(legend_html(view["legend"]), unsafe_allow_html=True)
    b = meta["buildings"]
    cols = st.columns(5)
    cols[0].metric("Buildings", b["count"])
    cols[1].metric("Sites", len(meta["sites"]))
    cols[2].metric("Extent", f"{meta['extent_m']['width']:.0f} x {meta['extent_m']['height']:.0f} m")
    cols[3].metric("Median height", f"{b['height_m']['median']:.1f} m")
    cols[4].metric("Mode", meta["mode"])
    st.markdown("**Height rules used:** " + ", ".join(f"{k}: {v}" for k, v in b["height_rules"].items()))
    if meta["source"]["kind"] == "sionna_xml":
        render_import_notes(meta)
    fp = b["footprints"]
    st.caption(
        f"Footprints read {fp['read']}, kept {fp['kept']}, clipped to the box {fp['clipped']}, "
        f"dropped as degenerate {fp['dropped_degenerate']}, outside the box {fp['dropped_outside']}."
    )
    notes = describe_footprints(fp)  # skipped / repaired features of the source file, by reason
    if notes:
        st.warning("\n".join(f"- {line}" for line in notes))
    with st.expander("Sites"):
        st.dataframe(pd.DataFrame(view["site_table"]), hide_index=True)  # each node's band (carrier) too
    with st.expander("Materials"):
        st.dataframe(pd.DataFrame(meta["materials"]["table"]), hide_index=True)
    with st.expander("scene.json"):
        st.json(meta, expanded=False)


def name_from(key: str) -> None:
    """``on_change`` of a file or path widget: the scene name becomes the new file's stem.

    Unless the user typed a name of their own: only the default, the name a previous file
    gave, or the name of a scene that already exists (unusable for a new build) is replaced.
    """
    value = st.session_state.get(key)
    filename = getattr(value, "name", value)  # an uploaded file, or a typed path
    current = st.session_state.get("sb_name", DEFAULT_NAME)
    replaceable = {DEFAULT_NAME, "", st.session_state.get("sb_name_auto")} | {s["name"] for s in sc.list_scenes()}
    if filename and current in replaceable:
        st.session_state["sb_name"] = st.session_state["sb_name_auto"] = name_from_file(filename)


def legend_html(rows: list[dict]) -> str:
    """The colour legend with a swatch per row, and the sites' marker as drawn."""
    def swatch(rgb: list[int], *, round_: bool = False) -> str:
        shape = "border-radius:50%;" if round_ else ""
        return (f'<span style="display:inline-block;width:0.9em;height:0.9em;vertical-align:-0.1em;{shape}'
                f'background:rgb({rgb[0]},{rgb[1]},{rgb[2]});border:1px solid #555"></span>')
    items = [f"{swatch(row['colour'])}&nbsp;{html.escape(str(row['label']))}" for row in rows]
    items.append(f"{swatch(SITE_RGB, round_=True)}&nbsp;sites (red dot at the antenna's height)")
    return '<div data-testid="scene-legend" style="font-size:0.85em">' + " &nbsp; ".join(items) + "</div>"


def render_import_notes(meta: dict) -> None:
    """What an imported scene's footprints were derived from, and whether its lat/lon are real."""
    src, ground, raster = meta["source"], meta["ground"], meta["raster"]
    st.caption(
        f"Imported from {src['file']} (sha256 {src['sha256'][:12]}…): {src['objects']} objects, "
        f"{src['triangles']:,} triangles. Ground: {ground['rule']} ({', '.join(ground['objects']) or 'none'}, "
        f"z = {ground['z_m']} m). Roof raster {raster['cell_m']} m; buildings are areas at least "
        f"{raster['min_building_height_m']} m above the ground and {raster['min_footprint_area_m2']} m² large "
        f"({meta['buildings']['footprints'].get('dropped_small', 0)} smaller dropped)."
    )
    if not meta["frame"].get("georeferenced", True):
        st.warning("This scene has no geographic origin: it works in scene metres; its latitudes and longitudes "
                   "are placeholders around a nominal origin. Import it again with an origin to geo-reference it.")
    for line in meta.get("warnings", []):
        st.warning(line)


tab_build, tab_tiles, tab_scenes = st.tabs(["Build a scene", "Tile set", "Scenes"])

with tab_build:
    source = SOURCES[radio(st, "Source", list(SOURCES), horizontal=True, key="sb_source")]
    # A chosen file renames the scene (name_from, on the file widgets below).
    name = text(st, "Scene name", value=DEFAULT_NAME, key="sb_name", help="Letters, digits, '_', '-', '.'")
    file_path = None
    bbox_text = ""
    proc = {}
    if source == "procedural":
        c = st.columns(6)
        proc["seed"] = number(c[0], sc.ProceduralConfig, "seed", key="sb_seed")
        proc["size_m"] = number(c[1], sc.ProceduralConfig, "size_m", key="sb_size")
        proc["block_m"] = number(c[2], sc.ProceduralConfig, "block_m", key="sb_block")
        proc["street_width_m"] = number(c[3], sc.ProceduralConfig, "street_width_m", key="sb_street")
        proc["open_square_fraction"] = number(c[4], sc.ProceduralConfig, "open_square_fraction", key="sb_squares")
        proc["mean_height_m"] = number(c[5], sc.ProceduralConfig, "mean_height_m", key="sb_height")
    elif source == "file":
        upload = st.file_uploader("OSM XML (.osm) or GeoJSON footprints", type=["osm", "xml", "geojson", "json"],
                                  key="sb_file", on_change=name_from, args=("sb_file",))
        typed = st.text_input("…or a path on this machine", key="sb_path", on_change=name_from, args=("sb_path",))
        file_path = ("upload", upload) if upload is not None else (("path", typed) if typed else None)
    elif source == "sionna_xml":
        xml_kind = st.radio("Scene", XML_KINDS, horizontal=True, key="sb_xml_kind")
        if xml_kind == XML_KINDS[0]:
            bundled = bundled_scenes()
            names = list(bundled)
            default = names.index("simple_street_canyon") if "simple_street_canyon" in names else 0
            chosen_xml = st.selectbox("Sionna RT scene", names, key="sb_bundled", index=default)
            file_path = ("path", bundled[chosen_xml])
        elif xml_kind == XML_KINDS[1]:
            typed = st.text_input("Scene XML on this machine (its meshes beside it)", key="sb_xml_path",
                                  on_change=name_from, args=("sb_xml_path",))
            file_path = ("path", typed) if typed else None
        else:
            upload = st.file_uploader("A .zip holding the scene XML and its meshes", type=["zip"], key="sb_xml_zip",
                                      on_change=name_from, args=("sb_xml_zip",))
            file_path = ("zip", upload) if upload is not None else None
        c = st.columns(3)
        origin_text = c[0].text_input("Origin LAT,LON (optional)", key="sb_origin",
                                      help="Geographic position of the scene's (0, 0). Default: the file's "
                                           "(Geo2SigMap states it), else the scene works in metres only.")
        raster_cell = number(c[1], SceneImportConfig, "raster_cell_m", key="sb_raster_cell")
        min_height = number(c[2], SceneImportConfig, "min_building_height_m", key="sb_min_height")
        st.caption("Footprints, heights and materials are derived from the meshes (top-down roof raster, ground "
                   "left out); the scene's own radio materials are traced.")
    else:
        st.markdown("Draw a box on the map (the square button, then drag; at most 2 km a side) or type its "
                    "corners. The map works offline: without map tiles it shows a degree grid and the outlines "
                    "of a file loaded here. Building downloads the box's buildings from OpenStreetMap (online).")
        outlines = boxmap.outlines_picker(key="sb_outline")
        boxmap.box_map(key="sb_map", field="sb_bbox", outlines=outlines)
        bbox_text = st.text_input("Box S,W,N,E (degrees)", key="sb_bbox")

    if source != "sionna_xml":  # an imported scene brings its own materials
        with st.expander("Buildings and materials"):
            c = st.columns(4)
            default_height = number(c[0], sc.SceneConfig, "default_height_m", key="sb_default_h")
            storey = number(c[1], sc.SceneConfig, "storey_height_m", key="sb_storey")
            material = choice(c[2], sc.MaterialConfig, "building", key="sb_material")
            ground = choice(c[3], sc.MaterialConfig, "ground", key="sb_ground")
            randomize = toggle(st, sc.MaterialConfig, "randomize", key="sb_rand")

    with st.expander("Sites", expanded=True):
        c = st.columns(4)
        mode = choice(c[0], sc.SiteConfig, "mode", key="sb_mode")
        placement = choice(c[1], sc.SiteConfig, "placement", key="sb_placement")
        count = number(c[2], sc.SiteConfig, "count", key="sb_count")
        mount = choice(c[3], sc.SiteConfig, "mount", key="sb_mount")
        c = st.columns(6)
        height = number(c[0], sc.SiteConfig, "height_m", key="sb_site_h")
        freq_hz = number(c[1], sc.SiteConfig, "freq_hz", key="sb_freq", label="Frequency (GHz)", scale=1e9)
        power = number(c[2], sc.SiteConfig, "tx_power_dbm", key="sb_power")
        pattern = choice(c[3], sc.SiteConfig, "pattern", key="sb_pattern")
        azimuth = number(c[4], sc.SiteConfig, "azimuth_deg", key="sb_az", none_value=-1.0,
                         label="Azimuth (° from N, -1 = towards centre)")
        downtilt = number(c[5], sc.SiteConfig, "downtilt_deg", key="sb_tilt")
        # the core parses and checks the list (sites.bands); empty: one cell per site at the frequency above
        bands = text(st, "Bands (Hz): a cell per band on every site, e.g. 3.5e9,28e9; empty: the frequency above",
                     value="", key="sb_bands")
        custom_rows = None
        if placement == "custom":
            st.markdown("Custom sites: scene metres (x east, y north, origin at the centre) or lat/lon.")
            custom_rows = st.data_editor(
                pd.DataFrame([{"id": "site-0", "x_m": 0.0, "y_m": 0.0, "lat": None, "lon": None,
                               "height_m": 10.0, "mount": "ground"}]),
                num_rows="dynamic", key="sb_custom",
                column_config={"mount": st.column_config.SelectboxColumn(options=["ground", "rooftop"])},
            )

    if source != "sionna_xml" and st.button("Build scene", type="primary", key="sb_build"):
        bar = st.progress(0.0, text="starting")
        try:
            path = None
            if source == "file":
                if file_path is None:
                    raise InvalidInputError("osm_file: choose a file to upload or type a path, got none")
                path = save_upload(file_path[1].name, file_path[1].getvalue()) if file_path[0] == "upload" else file_path[1]
            custom = ()
            seed = {"seed": int(proc["seed"])} if "seed" in proc else {}  # the city's seed, else the configs' own
            if custom_rows is not None:
                custom = tuple(sc.CustomSite.from_dict(row, index=i) for i, row in enumerate(custom_rows.to_dict("records")))
            config = sc.SceneConfig(
                name=name,
                source=source,
                procedural=sc.ProceduralConfig(**{k: (int(v) if k == "seed" else float(v)) for k, v in proc.items()})
                if proc else sc.ProceduralConfig(),
                path=str(path) if path else None,
                bbox=sc.BBox.parse(bbox_text) if source == "bbox" else None,
                default_height_m=float(default_height),
                storey_height_m=float(storey),
                materials=sc.MaterialConfig(building=material, randomize=randomize, ground=ground),
                sites=sc.SiteConfig(mode=mode, placement=placement, count=int(count), mount=mount, height_m=float(height),
                                    freq_hz=freq_hz, tx_power_dbm=float(power), pattern=pattern,
                                    azimuth_deg=azimuth, downtilt_deg=float(downtilt), custom=custom, bands=bands,
                                    **seed),
                **seed,
            )
            summary = sc.build_scene(config, progress=lambda stage, f: bar.progress(min(f, 1.0), text=stage),
                                     user=user)
        except RFLocalInputError as exc:
            bar.empty()
            st.error(str(exc))
        else:
            st.success(f"Built scene **{summary.name}**: {summary.buildings} buildings, "
                      f"{summary.sites} sites in {summary.seconds:.1f} s.")
            st.session_state["sb_built"] = summary.name

    if source == "sionna_xml" and st.button("Import scene", type="primary", key="sb_import"):
        bar = st.progress(0.0, text="starting")
        try:
            if file_path is None:
                raise InvalidInputError("scene_xml: choose a bundled scene, type a path or upload a .zip, got none")
            kind, value = file_path
            xml_path = save_scene_zip(value.name, value.getvalue()) if kind == "zip" else value
            origin = parse_origin(origin_text)
            rows = custom_rows.to_dict("records") if custom_rows is not None else []
            sites = sc.SiteConfig(
                mode=mode, placement=placement, count=int(count), mount=mount, height_m=float(height),
                freq_hz=freq_hz, tx_power_dbm=float(power), pattern=pattern,
                azimuth_deg=azimuth, downtilt_deg=float(downtilt),
                custom=tuple(sc.CustomSite.from_dict(row, index=i) for i, row in enumerate(rows)),
            )
            config = SceneImportConfig(
                name=name, path=str(xml_path), origin_lat=origin[0] if origin else None,
                origin_lon=origin[1] if origin else None, raster_cell_m=float(raster_cell),
                min_building_height_m=float(min_height), sites=sites,
            )
            summary = import_scene(config, progress=lambda stage, f: bar.progress(min(f, 1.0), text=stage),
                                   user=user)
        except RFLocalInputError as exc:
            bar.empty()
            st.error(str(exc))
        else:
            st.success(f"Imported scene **{summary.name}**: {summary.buildings} buildings derived from "
                       f"{summary.objects} objects ({summary.triangles:,} triangles), {summary.sites} sites "
                       f"in {summary.seconds:.1f} s.")
            st.session_state["sb_built"] = summary.name

    built = st.session_state.get("sb_built")
    if built and built in {s["name"] for s in sc.list_scenes()}:
        st.subheader(f"Scene {built}")
        render_scene(built, key="built")

with tab_tiles:
    render_tiles_tab(user)

with tab_scenes:
    scenes = sc.list_scenes()
    if not scenes:
        st.info("No scenes yet: build one in the first tab.")
    else:
        st.dataframe(pd.DataFrame(scenes), hide_index=True)
        chosen = st.selectbox("Open scene", [s["name"] for s in scenes], key="sb_open")
        c = st.columns([1, 3])
        if allowed(user, "delete_scene"):
            confirm = c[1].checkbox("Yes, delete it", key="sb_confirm_delete")
            if c[0].button("Delete scene", key="sb_delete", disabled=not confirm):
                sc.delete_scene(chosen, user=user)
                st.success(f"Deleted {chosen}.")
                st.rerun()
        render_scene(chosen, key="open")
