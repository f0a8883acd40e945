"""Radio materials for buildings and ground (ITU-R P.2040) and their randomization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import check_options, option

#: Building materials offered, with the frequency range (GHz) in which the
#: ITU-R P.2040 Table 3 model (as implemented by Sionna RT) is defined.
BUILDING_MATERIALS: dict[str, tuple[float, float]] = {
    "concrete": (1.0, 100.0),
    "brick": (1.0, 40.0),
    "glass": (0.1, 100.0),
    "metal": (1.0, 100.0),
    "wood": (0.001, 100.0),
}

#: Ground materials offered, with their ITU frequency ranges (GHz).
GROUND_MATERIALS: dict[str, tuple[float, float]] = {
    "medium_dry_ground": (1.0, 10.0),
    "very_dry_ground": (1.0, 10.0),
    "wet_ground": (1.0, 10.0),
    "concrete": (1.0, 100.0),
}

#: Default mix of building materials (weights) when none is forced.
DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("concrete", 0.5),
    ("brick", 0.25),
    ("glass", 0.15),
    ("metal", 0.05),
    ("wood", 0.05),
)

#: Values of the OSM tag ``building:material`` (and ``building:facade:material``)
#: that map onto an offered material.
OSM_MATERIAL_TAGS: dict[str, str] = {
    "concrete": "concrete",
    "reinforced_concrete": "concrete",
    "cement_block": "concrete",
    "plaster": "concrete",
    "stone": "brick",
    "brick": "brick",
    "sandstone": "brick",
    "limestone": "brick",
    "glass": "glass",
    "mirror": "glass",
    "metal": "metal",
    "steel": "metal",
    "aluminium": "metal",
    "wood": "wood",
    "timber_framing": "wood",
}


def check_material(name: str, *, field: str, allowed: dict[str, tuple[float, float]]) -> str:
    """Return ``name`` if it is an offered material, else raise naming the choices."""
    if name not in allowed:
        msg = f"{field}: unknown material {name!r}; expected one of {', '.join(sorted(allowed))}"
        raise InvalidInputError(msg)
    return name


@dataclass(frozen=True)
class MaterialConfig:
    """How buildings get their radio materials.

    Parameters
    ----------
    building : str
        ``"mixed"`` (drawn per building from ``mix``, seeded; an OSM
        ``building:material`` tag wins when ``use_osm_tags``) or one material name.
    mix : tuple of (name, weight)
        Weights of the mixed draw.
    use_osm_tags : bool
        Honour ``building:material`` tags where present.
    randomize : bool
        Domain randomization: each building gets its own material with relative
        permittivity drawn uniformly from ``settings.permittivity_range`` and
        conductivity log-uniformly from ``settings.conductivity_range_s_per_m``.
    ground : str
        ITU material of the ground plane.
    """

    # building and ground are checked by hand: their message names the materials offered
    building: str = option("mixed", choices=("mixed", *BUILDING_MATERIALS), check=False, label="Building material",
                           flag="material", help="mixed, or one material for every building")
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    use_osm_tags: bool = option(True, label="Use building:material tags", flag="no-osm-material-tags",
                                help="the OSM building:material tags where present")
    randomize: bool = option(False, flag="randomize-materials", help="domain randomization per building",
                             label="Domain randomization (per-building permittivity 2-15, conductivity 0.001-10 S/m)")
    ground: str = option("medium_dry_ground", choices=tuple(GROUND_MATERIALS), check=False, label="Ground",
                         flag="ground-material", help="ITU material of the ground plane")

    def __post_init__(self) -> None:
        check_options(self, prefix="materials.")
        if self.building != "mixed":
            check_material(self.building, field="materials.building", allowed=BUILDING_MATERIALS)
        for name, weight in self.mix:
            check_material(name, field="materials.mix", allowed=BUILDING_MATERIALS)
            if not np.isfinite(weight) or weight < 0:
                msg = f"materials.mix[{name}]: expected a weight >= 0, got {weight!r}"
                raise InvalidInputError(msg)
        if sum(w for _, w in self.mix) <= 0:
            msg = f"materials.mix: expected at least one positive weight, got {self.mix!r}"
            raise InvalidInputError(msg)
        check_material(self.ground, field="materials.ground", allowed=GROUND_MATERIALS)

    def valid_freq_range_ghz(self, used: set[str]) -> tuple[float, float]:
        """Frequency range (GHz) in which every ITU material in use is defined."""
        ranges = [GROUND_MATERIALS[self.ground]]
        if not self.randomize:
            ranges += [BUILDING_MATERIALS[m] for m in used]
        return max(r[0] for r in ranges), min(r[1] for r in ranges)


def assign_materials(
    osm_tags: list[dict[str, Any]], config: MaterialConfig, rng: np.random.Generator
) -> tuple[list[str], list[dict[str, Any]]]:
    """Choose a material per building.

    Returns
    -------
    names : list of str
        Material id per building (an ITU name, or ``"rand-<i>"`` when randomized).
    table : list of dict
        One row per distinct material: ``id``, ``kind`` (``"itu"`` or ``"custom"``),
        ``itu_type`` or the custom parameters, and the number of buildings using it.
    """
    mix_names = [n for n, _ in config.mix]
    weights = np.array([w for _, w in config.mix], dtype=float)
    weights /= weights.sum()
    base: list[str] = []
    for tags in osm_tags:
        tagged = None
        if config.use_osm_tags:
            for key in ("building:material", "building:facade:material"):
                value = str(tags.get(key, "") or "").strip().lower()
                if value in OSM_MATERIAL_TAGS:
                    tagged = OSM_MATERIAL_TAGS[value]
                    break
        draw = mix_names[int(rng.choice(len(mix_names), p=weights))]
        if config.building != "mixed":
            base.append(config.building)
        else:
            base.append(tagged or draw)

    if not config.randomize:
        counts: dict[str, int] = {}
        for name in base:
            counts[name] = counts.get(name, 0) + 1
        table = [
            {"id": name, "kind": "itu", "itu_type": name, "thickness_m": settings.wall_thickness_m, "buildings": n}
            for name, n in sorted(counts.items())
        ]
        return base, table

    eps_lo, eps_hi = settings.permittivity_range
    sig_lo, sig_hi = settings.conductivity_range_s_per_m
    names, table = [], []
    for i, name in enumerate(base):
        eps = float(rng.uniform(eps_lo, eps_hi))
        sigma = float(np.exp(rng.uniform(np.log(sig_lo), np.log(sig_hi))))
        mid = f"rand-{i}"
        names.append(mid)
        table.append(
            {
                "id": mid,
                "kind": "custom",
                "base_material": name,
                "relative_permittivity": eps,
                "conductivity_s_per_m": sigma,
                "thickness_m": settings.wall_thickness_m,
                "buildings": 1,
            }
        )
    return names, table
