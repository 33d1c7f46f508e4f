-- Residents' requests (issue 28): where a filing came in, what the resident
-- asks for, the partner's own reference, and when the case last changed
-- (Open311's updated_datetime). Rows written before this migration read as
-- a grid worker's filing last changed when it was filed, until the read
-- models are rebuilt (gridcase-projection rebuild).
ALTER TABLE cases
    ADD COLUMN channel TEXT NOT NULL DEFAULT 'GRID_WORKER',
    ADD COLUMN request_kind TEXT,
    ADD COLUMN reference TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ;
UPDATE cases SET updated_at = filed_at;
ALTER TABLE cases ALTER COLUMN updated_at SET NOT NULL;

-- A partner's own requests, newest first (Open311's requests.xml by date).
CREATE INDEX cases_reporter_filed ON cases (reported_by, filed_at DESC, case_id DESC);

-- Every change in a window (Open311's servicerequestupdates.xml).
CREATE INDEX case_events_occurred ON case_events (occurred_at, stream_sequence);
