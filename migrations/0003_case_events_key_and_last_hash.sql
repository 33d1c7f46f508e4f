-- The audit history is read by case only (a case's history, its last hash),
-- so its one key is (case_id, case_version): the stream sequence and the
-- event id keep their columns but no longer an index each. A rebuild builds
-- one index over the history instead of three, and every live write
-- maintains one.
ALTER TABLE case_events DROP CONSTRAINT case_events_pkey;
ALTER TABLE case_events DROP CONSTRAINT case_events_event_id_key;
ALTER TABLE case_events DROP CONSTRAINT case_events_case_id_case_version_key;
ALTER TABLE case_events ADD PRIMARY KEY (case_id, case_version);

-- The hash of each case's last kept event, beside its row: the next event
-- must chain to it. A rebuild that has let a quiet case go reads it back
-- from here rather than from the history.
ALTER TABLE cases ADD COLUMN last_hash TEXT;
UPDATE cases SET last_hash = last.hash
FROM (SELECT DISTINCT ON (case_id) case_id, hash FROM case_events ORDER BY case_id, case_version DESC) AS last
WHERE last.case_id = cases.case_id;
ALTER TABLE cases ALTER COLUMN last_hash SET NOT NULL;
