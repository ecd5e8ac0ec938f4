"""Seeded synthetic Sentinel-2-like scenes with exact ASM pit and pond instance labels."""
