-- Merging duplicates (并案, issue 29): the main case a duplicate was merged
-- into, and the ledger's count of merges. A merged duplicate's filing is
-- withdrawn from `filed` (on its filing's day) and counted in `merged` (on
-- the merge's day), so a merged pair is one case filed.
ALTER TABLE cases ADD COLUMN merged_into TEXT;
ALTER TABLE ledger_daily ADD COLUMN merged BIGINT NOT NULL DEFAULT 0;
