-- Residents' contact details are sealed under a per-case data key (issue
-- 15). The read model keeps the ciphertext only, for the query service to
-- open with the case's key and mask; it never holds a key or clear text.
-- contact_state: 'none' (no details left), 'given', 'erased'.
ALTER TABLE cases
    ADD COLUMN contact_state TEXT NOT NULL DEFAULT 'none'
        CHECK (contact_state IN ('none', 'given', 'erased')),
    ADD COLUMN contact_sealed TEXT;

-- Rows projected before this migration recorded a masked phone for details
-- in clear; a filing that left only a name shows as 'none' until a rebuild.
UPDATE cases SET contact_state = 'given' WHERE contact_phone_masked IS NOT NULL;
