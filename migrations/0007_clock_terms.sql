-- How each clock of a case counts its time, as recorded with its deadline
-- (issue 26): JSON, {"RESOLVE": {"working": true, "hours_of": "unit.…"}}.
-- NULL for cases whose deadlines were set before terms were recorded: the
-- query service derives them from the policy then.
ALTER TABLE cases ADD COLUMN clock_terms TEXT;
