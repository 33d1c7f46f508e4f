-- The daily trend of overdue work (issue 27): how many clocks passed their
-- deadline on each day, per organisation (the dispatcher's overdue marks).
-- Rows written before this migration count 0 until the read models are
-- rebuilt (gridcase-projection rebuild).
ALTER TABLE ledger_daily ADD COLUMN turned_overdue BIGINT NOT NULL DEFAULT 0;
