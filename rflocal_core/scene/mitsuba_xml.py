"""Write the Mitsuba XML scene that ``sionna.rt.load_scene`` reads."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr


def material_xml(row: dict[str, Any]) -> str:
    """One ``<bsdf>`` element for a row of the material table."""
    mid = quoteattr(row["id"])
    if row["kind"] == "itu":
        return (
            f'  <bsdf type="itu-radio-material" id={mid}>\n'
            f'    <string name="type" value={quoteattr(row["itu_type"])}/>\n'
            f'    <float name="thickness" value="{row["thickness_m"]}"/>\n'
            "  </bsdf>\n"
        )
    return (
        f'  <bsdf type="radio-material" id={mid}>\n'
        f'    <float name="relative_permittivity" value="{row["relative_permittivity"]:.6g}"/>\n'
        f'    <float name="conductivity" value="{row["conductivity_s_per_m"]:.6g}"/>\n'
        f'    <float name="thickness" value="{row["thickness_m"]}"/>\n'
        "  </bsdf>\n"
    )


def shape_xml(shape_id: str, ply_relpath: str, material_id: str) -> str:
    """One ``<shape type="ply">`` element."""
    return (
        f'  <shape type="ply" id={quoteattr(shape_id)}>\n'
        f'    <string name="filename" value={quoteattr(ply_relpath)}/>\n'
        '    <boolean name="face_normals" value="true"/>\n'
        f'    <ref id={quoteattr(material_id)} name="bsdf"/>\n'
        "  </shape>\n"
    )


def scene_xml(materials: list[dict[str, Any]], shapes: list[tuple[str, str, str]]) -> str:
    """The whole scene: materials then shapes ``(shape_id, ply_relpath, material_id)``."""
    parts = ['<scene version="2.1.0">\n', "  <!-- Materials -->\n"]
    parts += [material_xml(row) for row in materials]
    parts.append("  <!-- Shapes -->\n")
    parts += [shape_xml(*shape) for shape in shapes]
    parts.append("</scene>\n")
    return "".join(parts)
