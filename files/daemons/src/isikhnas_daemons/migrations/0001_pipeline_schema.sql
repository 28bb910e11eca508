-- The messaging pipeline's schema: reporters, locations, inbound messages, field reports, outbox,
-- report runs and delivery de-duplication. Applied once by isikhnas-migrate inside a transaction.

-- PostGIS must be created by a superuser beforehand (the database role does it); IF NOT EXISTS then
-- succeeds without privileges.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE SCHEMA IF NOT EXISTS pipeline;

-- Who may report: one row per (channel, address); the processor answers others with a rejection.
CREATE TABLE pipeline.reporter (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL CHECK (channel IN ('email', 'im')),
    address     text NOT NULL CHECK (address = lower(address)),
    name        text,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, address)
);

-- Registered location codes (villages, farms, markets) usable instead of coordinates.
CREATE TABLE pipeline.location (
    code        text PRIMARY KEY CHECK (code = upper(code)),
    name        text NOT NULL,
    geom        geometry(Point, 4326) NOT NULL
);

-- Every message the processor saw, accepted or not; the primary key is the idempotency key.
CREATE TABLE pipeline.inbound_message (
    message_id      text PRIMARY KEY,
    channel         text NOT NULL CHECK (channel IN ('email', 'im')),
    sender_address  text NOT NULL,
    reporter_id     bigint REFERENCES pipeline.reporter (id),
    received_at     timestamptz NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL CHECK (status IN ('accepted', 'rejected', 'request')),
    error           text,
    subject         text,
    body            text NOT NULL,
    original_bucket text,
    original_key    text
);

CREATE TABLE pipeline.field_report (
    id              bigserial PRIMARY KEY,
    message_id      text NOT NULL UNIQUE REFERENCES pipeline.inbound_message (message_id),
    reporter_id     bigint NOT NULL REFERENCES pipeline.reporter (id),
    kind            text NOT NULL CHECK (kind IN ('DIS', 'VAC')),
    disease         text NOT NULL,
    location_code   text REFERENCES pipeline.location (code),
    geom            geometry(Point, 4326) NOT NULL,
    reported_at     timestamptz NOT NULL
);
CREATE INDEX field_report_geom_idx ON pipeline.field_report USING gist (geom);
CREATE INDEX field_report_reported_at_idx ON pipeline.field_report (reported_at);

-- Long format (one row per species and measure) keeps the aggregates plain SQL.
CREATE TABLE pipeline.field_report_count (
    report_id   bigint NOT NULL REFERENCES pipeline.field_report (id) ON DELETE CASCADE,
    species     text NOT NULL,
    measure     text NOT NULL CHECK (measure IN ('sick', 'dead', 'vaccinated')),
    n           integer NOT NULL CHECK (n >= 0),
    PRIMARY KEY (report_id, species, measure)
);

-- Transactional outbox: messages to send are written in the same transaction as the data, then
-- relayed to SQS and marked sent. dedup_id is deterministic (e.g. 'email:<id>:reply').
CREATE TABLE pipeline.outbox (
    dedup_id    text PRIMARY KEY,
    source_id   text NOT NULL,
    queue       text NOT NULL,
    body        jsonb NOT NULL,
    group_id    text NOT NULL DEFAULT 'default',
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_source_idx ON pipeline.outbox (source_id);
CREATE INDEX outbox_unsent_idx ON pipeline.outbox (created_at) WHERE sent_at IS NULL;

CREATE TABLE pipeline.report_run (
    request_id  text PRIMARY KEY,
    report      text NOT NULL,
    params      jsonb NOT NULL,
    row_count   integer NOT NULL,
    csv_key     text NOT NULL,
    chart_key   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Consumers that talk to the outside world (email-sender, im-gateway) record what they delivered,
-- so a redelivered queue message is not sent twice.
CREATE TABLE pipeline.delivery (
    dedup_id      text PRIMARY KEY,
    channel       text NOT NULL,
    provider_id   text,
    delivered_at  timestamptz NOT NULL DEFAULT now()
);
