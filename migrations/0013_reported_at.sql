-- Offline filings (issue 29): when the worker saw the problem (the device's
-- time on the filing, perhaps hours before the server received it) beside
-- filed_at (the server's receipt, where the register clock starts). Rows
-- projected before this migration hold NULL until the read models are
-- rebuilt.
ALTER TABLE cases ADD COLUMN reported_at TIMESTAMPTZ;
