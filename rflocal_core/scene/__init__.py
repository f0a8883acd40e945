"""Scene Builder: footprints from OSM, files or a procedural city, extruded for Sionna RT.

Public API::

    from rflocal_core.scene import SceneConfig, SceneImportConfig, build_scene, bundled_scenes, import_scene
    build_scene(SceneConfig(name="demo"))
    import_scene(SceneImportConfig(name="munich", path=bundled_scenes()["munich"]))
"""

from __future__ import annotations

from rflocal_core.geo import BBox, LocalFrame
from rflocal_core.scene.build import SOURCES, SceneBuildResult, SceneConfig, build_scene, scenes_dir
from rflocal_core.scene.importer import SceneImportConfig, SceneImportResult, bundled_scenes, import_scene
from rflocal_core.scene.materials import BUILDING_MATERIALS, GROUND_MATERIALS, MaterialConfig
from rflocal_core.scene.procedural import ProceduralConfig
from rflocal_core.scene.sites import CustomSite, SiteConfig
from rflocal_core.scene.store import delete_scene, list_scenes, load_scene_meta, scene_dir, scene_frame, view_data

__all__ = [
    "BBox",
    "BUILDING_MATERIALS",
    "CustomSite",
    "GROUND_MATERIALS",
    "LocalFrame",
    "MaterialConfig",
    "ProceduralConfig",
    "SOURCES",
    "SceneBuildResult",
    "SceneConfig",
    "SceneImportConfig",
    "SceneImportResult",
    "SiteConfig",
    "build_scene",
    "bundled_scenes",
    "delete_scene",
    "import_scene",
    "list_scenes",
    "load_scene_meta",
    "scene_dir",
    "scene_frame",
    "scenes_dir",
    "view_data",
]
