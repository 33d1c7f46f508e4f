-- Residents' requests (issue 28): the ledger's measures of answers and
-- callbacks. reply_due and callback_due count on the day the deadline falls,
-- replied_on_time on the same day (so "answered on time / due" is a rate
-- of one day's due answers); replied and called_back on the day they
-- happened. Ledger rows also exist per kind of request (org_kind 'kind')
-- and per channel (org_kind 'channel'). Rows written before this migration
-- count 0 until the read models are rebuilt.
ALTER TABLE ledger_daily
    ADD COLUMN reply_due BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replied BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN replied_on_time BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN callback_due BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN called_back BIGINT NOT NULL DEFAULT 0;
