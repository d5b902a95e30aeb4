"""Wearer profiles: who cramps how often, so a fleet over weeks has realistic night mixes.

Nocturnal leg cramps become more common with age and with pregnancy, diabetes and peripheral
artery disease (Allen & Kirby 2012, Am Fam Physician 86:350; Naylor & Young 1994, Age Ageing
23:418). The figures below are rounded from those sources; see ``docs/simulator.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

AGE_GROUPS: Final = ("18-39", "40-59", "60-79", "80+")
_AGE_WEIGHTS: Final = (0.2, 0.3, 0.35, 0.15)
# probability that a wearer of the group has nocturnal cramps at all, and their median weekly
# rate if they do
_CRAMPER_P: Final = {"18-39": 0.15, "40-59": 0.3, "60-79": 0.45, "80+": 0.55}
_MEDIAN_PER_WEEK: Final = {"18-39": 0.5, "40-59": 1.0, "60-79": 1.5, "80+": 2.0}
PREGNANCY_FACTOR: Final = 2.0
DIABETES_FACTOR: Final = 1.5
PAD_FACTOR: Final = 1.7


@dataclass(frozen=True)
class WearerProfile:
    """One wearer.

    Attributes
    ----------
    age_group : str
        One of :data:`AGE_GROUPS`.
    pregnant, diabetes, pad : bool
        Risk factors (PAD: peripheral artery disease).
    cramps_per_week : float
        Expected cramp episodes per week (0 for non-crampers).
    plm_prone : bool
        Has periodic limb movements on many nights.
    restless : bool
        Moves a lot in sleep.
    """

    age_group: str
    pregnant: bool
    diabetes: bool
    pad: bool
    cramps_per_week: float
    plm_prone: bool
    restless: bool

    def describe(self) -> str:
        """Short text for labels, e.g. ``"60-79 diabetes 2.1/week"``."""
        factors = [
            name
            for name, on in (
                ("pregnant", self.pregnant),
                ("diabetes", self.diabetes),
                ("pad", self.pad),
                ("plm", self.plm_prone),
                ("restless", self.restless),
            )
            if on
        ]
        return " ".join([self.age_group, *factors, f"{self.cramps_per_week:.1f}/week"])


def draw_profile(rng: np.random.Generator) -> WearerProfile:
    """A random wearer from an adult population shaped by the sources above."""
    age = str(rng.choice(AGE_GROUPS, p=_AGE_WEIGHTS))
    older = age in ("60-79", "80+")
    pregnant = age == "18-39" and rng.random() < 0.15
    diabetes = rng.random() < (0.2 if older else 0.07)
    pad = rng.random() < (0.12 if older else 0.02)
    cramper_p = _CRAMPER_P[age]
    if pregnant:
        cramper_p = max(cramper_p, 0.4)
    rate = 0.0
    if rng.random() < cramper_p or diabetes or pad:
        rate = _MEDIAN_PER_WEEK[age] * math.exp(0.8 * rng.standard_normal())
        rate *= PREGNANCY_FACTOR if pregnant else 1.0
        rate *= DIABETES_FACTOR if diabetes else 1.0
        rate *= PAD_FACTOR if pad else 1.0
        rate = min(rate, 14.0)
    return WearerProfile(
        age_group=age,
        pregnant=pregnant,
        diabetes=diabetes,
        pad=pad,
        cramps_per_week=round(rate, 2),
        plm_prone=rng.random() < (0.15 if older else 0.05),
        restless=rng.random() < 0.15,
    )


def night_scenario(rng: np.random.Generator, profile: WearerProfile) -> str:
    """The scenario of one night of this wearer."""
    if rng.random() < 0.04:
        return "faulty-sensor"
    per_night = profile.cramps_per_week / 7.0
    if rng.random() < 1.0 - math.exp(-per_night):
        return "frequent-cramps" if per_night > 0.8 and rng.random() < 0.5 else "typical"
    if profile.plm_prone and rng.random() < 0.6:
        return "plms"
    if profile.restless and rng.random() < 0.6:
        return "restless"
    return "quiet"
