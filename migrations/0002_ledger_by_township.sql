-- Ledger rows are kept per township as well: a handling unit or a grid
-- worker may serve several townships, and a command centre's ledger must
-- count its own township's cases only (authorization by territory).
--
-- The read models are derived from the event log, so rather than guess the
-- township of existing unit and worker rows, this migration empties them and
-- moves the projection back to the start of the stream: the projector
-- replays the whole log on its next start, exactly as `rebuild` would.
TRUNCATE cases, case_events, ledger_daily;
UPDATE projection_position SET stream_sequence = 0, skipped_events = 0, updated_at = now();

ALTER TABLE ledger_daily ADD COLUMN township TEXT NOT NULL;
ALTER TABLE ledger_daily DROP CONSTRAINT ledger_daily_pkey;
ALTER TABLE ledger_daily ADD PRIMARY KEY (org_kind, org, township, day);
-- A command centre's ledger: one township's rows of one kind over a period.
CREATE INDEX ledger_daily_by_township ON ledger_daily (township, org_kind, day);
