-- Residents' contact details are sealed since issue 15: new filings never
-- filled contact_phone_masked, which was documented as the masked number
-- (issue 25). The read model keeps the sealed form only (contact_sealed);
-- the query service masks at read time, opening it with the case's key.
-- For details recorded in clear before sealing, the masked number is in
-- the filing's redacted envelope in case_events, which the query service
-- reads instead.
ALTER TABLE cases DROP COLUMN contact_phone_masked;
