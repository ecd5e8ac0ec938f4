"""Raster and geometry core shared by every AIASMSpotter package.

Bands, scaling, nodata, windows, pixel<->map and mask<->polygon live here once. This package never
imports torch, so the client SDK and the labelling tools can use it without a deep-learning stack.
"""

import os

# GDAL's block cache defaults to 5 % of RAM; one row of 512 px windows across a full 6-band
# Sentinel-2 tile needs ~70 MB: 256 MB keeps reads fast and memory flat (benchmarks/bench_windows).
os.environ.setdefault("GDAL_CACHEMAX", "256")
