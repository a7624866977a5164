"""What a channel is: `ChannelMetadata` and its CF attributes (``units``, ``long_name``,
``standard_name``). Torch-free, so the generated-file format and the analysis tools use it too.

Generated files should say what each variable is without the reader knowing the dataset. Only
names whose units are certain are listed; anything else gets a plain ``long_name`` and no units,
because a wrong unit is worse than a missing one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CF_KEYS = ("units", "long_name", "standard_name")

# name -> (units, long_name, CF standard_name or "")
_KNOWN: dict[str, tuple[str, str, str]] = {
    # HRRR-Mini / synthetic (ECMWF-style short names)
    "10u": ("m s-1", "10 m eastward wind", "eastward_wind"),
    "10v": ("m s-1", "10 m northward wind", "northward_wind"),
    "u10": ("m s-1", "10 m eastward wind", "eastward_wind"),
    "v10": ("m s-1", "10 m northward wind", "northward_wind"),
    "2t": ("K", "2 m temperature", "air_temperature"),
    "t2m": ("K", "2 m temperature", "air_temperature"),
    "tp": ("mm h-1", "precipitation rate", "lwe_precipitation_rate"),
    "tcwv": ("kg m-2", "total column water vapour", "atmosphere_mass_content_of_water_vapor"),
    "msl": ("Pa", "mean sea level pressure", "air_pressure_at_mean_sea_level"),
    "elev_mean": ("m", "elevation (grid-cell mean)", "surface_altitude"),
    "lsm_mean": ("1", "land-sea mask (grid-cell mean, 1 = land)", ""),
    # CWA targets
    "maximum_radar_reflectivity": ("dBZ", "maximum radar reflectivity", ""),
    "temperature_2m": ("K", "2 m temperature", "air_temperature"),
    "eastward_wind_10m": ("m s-1", "10 m eastward wind", "eastward_wind"),
    "northward_wind_10m": ("m s-1", "10 m northward wind", "northward_wind"),
    # ERA5 channels of the CWA store (levels in hPa)
    "geopotential_height": ("m", "geopotential height", "geopotential_height"),
    "temperature": ("K", "temperature", "air_temperature"),
    "eastward_wind": ("m s-1", "eastward wind", "eastward_wind"),
    "northward_wind": ("m s-1", "northward wind", "northward_wind"),
    # Units differ between stores (m per hour, mm per hour, ...): described, not unit-labelled.
    "precipitation": ("", "precipitation", ""),
}
_TRAILING_LEVEL = re.compile(r"^(?P<name>.*\D)(?P<level>\d+)$")


def describe(name: str, level: str = "") -> dict[str, str]:
    """Attributes for channel ``name`` at ``level``; ``name`` may also be a label such as
    ``temperature850`` (a trailing number is taken as the level when the full label is unknown).

    Returns ``long_name`` always, ``units``/``standard_name`` only when known. Numeric levels are
    pressure levels in hPa (as in the CWA store).
    """
    level = str(level).strip()
    entry = _KNOWN.get(name)
    if entry is None and not level:
        match = _TRAILING_LEVEL.match(name)
        if match and match["name"] in _KNOWN:
            name, level = match["name"], match["level"]
            entry = _KNOWN[name]
    if entry is None:
        return {"long_name": f"{name} at {_level_text(level)}" if level else name}
    units, long_name, standard_name = entry
    attrs = {"long_name": f"{long_name} at {_level_text(level)}" if level else long_name}
    if units:
        attrs["units"] = units
    if standard_name:
        attrs["standard_name"] = standard_name
    return attrs


def _level_text(level: str) -> str:
    try:
        float(level)
    except ValueError:
        return level
    return f"{level} hPa"


# Rates only: an amount in "mm" or "kg m-2" may be a signed budget (precipitation minus
# evaporation), a rate with these units is precipitation-like and never negative.
_PRECIPITATION_RATE_UNITS = {"mm h-1", "mm/h", "mm hr-1", "mm/hr", "mm h**-1", "mm d-1",
                             "mm/d", "mm day-1", "mm/day", "mm s-1", "kg m-2 s-1",
                             "kg m**-2 s**-1", "kg/m2/s", "kg m-2 h-1", "m s-1 lwe"}
_PRECIPITATION_WORDS = ("precipitation", "rainfall", "snowfall", "rain_rate", "rain rate")
_SIGNED_WORDS = ("anomaly", "minus", "difference", "tendency", "change", "error")


def is_precipitation(attrs: dict[str, str]) -> bool:
    """True when CF attributes say precipitation: a ``standard_name`` or ``long_name`` about
    precipitation, rain or snowfall (not an anomaly or difference), or rate units such as
    ``mm h-1`` or ``kg m-2 s-1``. Such variables are treated as non-negative by default."""
    names = " ".join(str(attrs.get(k, "")).lower() for k in ("standard_name", "long_name"))
    if any(word in names for word in _SIGNED_WORDS):
        return False
    if any(word in names for word in _PRECIPITATION_WORDS):
        return True
    units = " ".join(str(attrs.get("units", "")).split())
    return units in _PRECIPITATION_RATE_UNITS


def channel_attributes(name: str, level: str = "", stored: dict[str, str] | None = None
                       ) -> dict[str, str]:
    """A channel's CF attributes: those stored with the data (units, long_name, standard_name)
    when there are any, else the table's (``describe``)."""
    stored = {k: str(v) for k, v in (stored or {}).items()
              if k in CF_KEYS and str(v).strip()}
    if stored:
        return {"long_name": describe(name, level)["long_name"], **stored}
    return describe(name, level)


@dataclass(frozen=True)
class ChannelMetadata:
    """One channel of a sample: a variable name, an optional vertical level, whether it is an
    auxiliary field appended to the input rather than a weather field (static orography, a
    validity mask), and the CF attributes the data carry (``""`` when unknown). The attributes
    describe the channel but do not take part in comparisons."""

    name: str
    level: str = ""
    auxiliary: bool = False
    units: str = field(default="", compare=False)
    long_name: str = field(default="", compare=False)
    standard_name: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """Name used for this channel in output files, e.g. ``temperature850`` or ``2t``."""
        return f"{self.name}{self.level}"

    @property
    def attributes(self) -> dict[str, str]:
        """The CF attributes that are known, for writing into files."""
        return {k: v for k, v in (("units", self.units), ("long_name", self.long_name),
                                  ("standard_name", self.standard_name)) if v}
