"""Throwaway servers for tests and demos: PostgreSQL + PostGIS, and a pgstac STAC API."""
