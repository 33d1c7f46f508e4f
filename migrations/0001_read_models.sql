-- Read models of the projection service, built from the case event log.
-- Every table lives in the schema named by the projection's search_path
-- ("read" by default), so a rebuild can fill a fresh schema and swap it in.

-- How far the projection has read the stream: committed in the same
-- transaction as the rows it produced.
CREATE TABLE projection_position (
    projection      TEXT PRIMARY KEY,
    stream_sequence BIGINT NOT NULL,
    skipped_events  BIGINT NOT NULL DEFAULT 0,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every event: the audit history, with the stored envelope verbatim so the
-- hash chain can be verified from the database alone.
CREATE TABLE case_events (
    stream_sequence    BIGINT PRIMARY KEY,
    event_id           UUID NOT NULL UNIQUE,
    case_id            UUID NOT NULL,
    case_version       BIGINT NOT NULL,
    event_type         TEXT NOT NULL,
    occurred_at        TIMESTAMPTZ NOT NULL,
    actor_person       TEXT NOT NULL,
    actor_role         TEXT NOT NULL,
    actor_organisation TEXT NOT NULL,
    reason             TEXT,
    hash               TEXT NOT NULL,
    prev_hash          TEXT,
    envelope           TEXT NOT NULL,
    UNIQUE (case_id, case_version)
);

-- The current state of every case.
CREATE TABLE cases (
    case_id                 UUID PRIMARY KEY,
    version                 BIGINT NOT NULL,
    last_sequence           BIGINT NOT NULL,
    state                   TEXT NOT NULL,
    county                  TEXT NOT NULL,
    township                TEXT NOT NULL,
    village                 TEXT NOT NULL,
    grid                    TEXT NOT NULL,
    category                TEXT NOT NULL,
    description             TEXT NOT NULL,
    reported_by             TEXT NOT NULL,
    contact_phone_masked    TEXT,
    severity_hint           TEXT,
    tier                    TEXT,
    unit                    TEXT,
    supervision             TEXT NOT NULL,
    urgent                  BOOLEAN NOT NULL,
    filed_at                TIMESTAMPTZ NOT NULL,
    registered_at           TIMESTAMPTZ,
    dispatched_at           TIMESTAMPTZ,
    acknowledged_at         TIMESTAMPTZ,
    resolved_at             TIMESTAMPTZ,
    closed_at               TIMESTAMPTZ,
    register_due            TIMESTAMPTZ,
    acknowledge_due         TIMESTAMPTZ,
    resolve_due             TIMESTAMPTZ,
    verify_due              TIMESTAMPTZ,
    marks                   TEXT[] NOT NULL,
    pending_extension_days  INTEGER,
    approved_extension_days INTEGER NOT NULL,
    hold_requested          BOOLEAN NOT NULL,
    feedback                TEXT,
    returns                 INTEGER NOT NULL,
    reworks                 INTEGER NOT NULL,
    reopenings              INTEGER NOT NULL
);

CREATE INDEX cases_township_filed ON cases (township, filed_at DESC, case_id DESC);
CREATE INDEX cases_filed ON cases (filed_at DESC, case_id DESC);
CREATE INDEX cases_county_filed ON cases (county, filed_at DESC, case_id DESC);
CREATE INDEX cases_grid ON cases (grid);
CREATE INDEX cases_unit ON cases (unit);
CREATE INDEX cases_state ON cases (state);
-- The overdue report scans open cases by deadline.
CREATE INDEX cases_open_resolve_due ON cases (resolve_due) WHERE state IN ('DISPATCHED', 'IN_PROGRESS');
CREATE INDEX cases_open_acknowledge_due ON cases (acknowledge_due) WHERE state = 'DISPATCHED';
CREATE INDEX cases_open_register_due ON cases (register_due) WHERE state = 'REPORTED';
CREATE INDEX cases_open_verify_due ON cases (verify_due) WHERE state = 'RESOLVED';

-- Measures per organisation and day (Asia/Shanghai): kind is township,
-- village, grid, unit or worker. Counts only; rates are computed on read.
CREATE TABLE ledger_daily (
    org_kind              TEXT NOT NULL,
    org                   TEXT NOT NULL,
    day                   DATE NOT NULL,
    filed                 BIGINT NOT NULL DEFAULT 0,
    registered            BIGINT NOT NULL DEFAULT 0,
    due                   BIGINT NOT NULL DEFAULT 0,
    closed                BIGINT NOT NULL DEFAULT 0,
    closed_on_time        BIGINT NOT NULL DEFAULT 0,
    dispatched            BIGINT NOT NULL DEFAULT 0,
    returned              BIGINT NOT NULL DEFAULT 0,
    reworked              BIGINT NOT NULL DEFAULT 0,
    extended              BIGINT NOT NULL DEFAULT 0,
    acknowledged          BIGINT NOT NULL DEFAULT 0,
    acknowledge_seconds   BIGINT NOT NULL DEFAULT 0,
    resolved              BIGINT NOT NULL DEFAULT 0,
    resolve_seconds       BIGINT NOT NULL DEFAULT 0,
    satisfied             BIGINT NOT NULL DEFAULT 0,
    basically_satisfied   BIGINT NOT NULL DEFAULT 0,
    unsatisfied           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (org_kind, org, day)
);

-- Instants cross the wire as microseconds since the epoch, so bulk writes
-- can bind plain bigint arrays.
CREATE FUNCTION ts_from_micros(micros BIGINT) RETURNS TIMESTAMPTZ
    LANGUAGE SQL IMMUTABLE STRICT
    RETURN TIMESTAMPTZ 'epoch' + micros * INTERVAL '1 microsecond';

CREATE FUNCTION micros(at TIMESTAMPTZ) RETURNS BIGINT
    LANGUAGE SQL IMMUTABLE STRICT
    RETURN (EXTRACT(EPOCH FROM at) * 1000000)::BIGINT;
