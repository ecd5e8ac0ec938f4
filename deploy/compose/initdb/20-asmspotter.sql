-- Runs once, on the first start of an empty postgis-data volume (after the image's own PostGIS
-- set-up of the `asmspotter` database). Label Studio keeps its tables in a database of its own.
CREATE DATABASE labelstudio OWNER asmspotter;

\connect asmspotter
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA IF NOT EXISTS sites AUTHORIZATION asmspotter;
