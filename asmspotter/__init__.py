"""AIASMSpotter: artisanal and small-scale gold mining sites from Sentinel imagery."""

__version__ = "0.1.0"
