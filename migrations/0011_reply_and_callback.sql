-- Residents' requests (issue 28): the reply clock (答复, from the filing
-- until the resident is answered) and the callback clock (回访, from the
-- closure until a callback reaches the resident), each with its deadline
-- column like the other clocks; when the resident was first answered, and
-- whether the current closure's callback reached them.
ALTER TABLE cases
    ADD COLUMN reply_due TIMESTAMPTZ,
    ADD COLUMN callback_due TIMESTAMPTZ,
    ADD COLUMN replied_at TIMESTAMPTZ,
    ADD COLUMN called_back BOOLEAN NOT NULL DEFAULT false;

-- The overdue report and the desk read each running clock by township.
CREATE INDEX cases_open_reply_due ON cases (township, reply_due) WHERE state NOT IN ('VOIDED', 'CANCELLED');
CREATE INDEX cases_open_callback_due ON cases (township, callback_due) WHERE state = 'CLOSED';
