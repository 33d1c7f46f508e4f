-- One map of the grids (issue 27). PostGIS holds the grids' boundaries,
-- loaded from the reference data (deploy/reference/grids.geojson) when the
-- projection starts, and each case's point, so that the map's questions
-- (which grids a territory has, which open cases lie where) are asked of a
-- tool made for them.
--
-- The extension lives in the schema public, shared by every read schema (a
-- rebuild drops and recreates its own schema; the extension must survive
-- that). Creating it needs a superuser on most servers:
-- deploy/install-deps.sh creates it in the gridcase database and in
-- template1 (so test databases have it); a database managed elsewhere needs
-- `CREATE EXTENSION postgis` run once by its administrator.
CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public;

CREATE TABLE grid_shapes (
    code     TEXT PRIMARY KEY,
    township TEXT NOT NULL,
    name     TEXT NOT NULL,
    -- 'grid' or 'micro_grid'
    level    TEXT NOT NULL,
    boundary public.geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX grid_shapes_township ON grid_shapes (township);

-- Where the filer stood, as filed (WGS 84 microdegrees: exact, as the event
-- holds it), and the point PostGIS computes from it. Cases projected before
-- this migration have no point until the read models are rebuilt
-- (gridcase-projection rebuild).
ALTER TABLE cases
    ADD COLUMN latitude_e6 INTEGER,
    ADD COLUMN longitude_e6 INTEGER,
    -- intake's flag: metres outside the grid's boundary, beyond tolerance
    ADD COLUMN outside_grid_m INTEGER,
    ADD COLUMN location public.geometry(Point, 4326) GENERATED ALWAYS AS (
        public.ST_SetSRID(public.ST_MakePoint(longitude_e6 / 1e6, latitude_e6 / 1e6), 4326)
    ) STORED;
