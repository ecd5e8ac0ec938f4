"""Raster and geometry core shared by every AIASMSpotter package.

Bands, scaling, nodata, windows, pixel<->map and mask<->polygon live here once. This package never
imports torch, so the client SDK and the labelling tools can use it without a deep-learning stack.
"""
