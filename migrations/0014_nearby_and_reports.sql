-- The grid worker's day (issue 29): reports of the same problem added to a
-- case (the case has `reports` reports, the filing's included), the case's
-- first photo (its thumbnail in lists), and the index FindSimilarCases
-- asks: open cases near a point. A partial GiST index over the points of
-- open cases only (closed ones are most of a year's table and are never
-- asked for), on the geography of the point so that distances are metres.
ALTER TABLE cases
    ADD COLUMN reports INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN photo TEXT;

CREATE INDEX cases_open_location ON cases USING GIST ((location::public.geography))
    WHERE state NOT IN ('CLOSED', 'VOIDED', 'CANCELLED');

-- ListMyCases: a worker's own filings and the cases of their grids (a grid
-- and its micro-grids: a prefix), changed after a cursor (the stream
-- sequence of a case's last event).
CREATE INDEX cases_reporter_sequence ON cases (reported_by, last_sequence);
CREATE INDEX cases_grid_prefix_sequence ON cases (grid text_pattern_ops, last_sequence);
