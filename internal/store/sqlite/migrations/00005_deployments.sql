-- Deployments, their members (one row per targeted device) and their operator events.
-- Keep this file in step with store/postgres/migrations/00005_deployments.sql, which differs
-- only in the type of deployment_members.active and the events ID column.

-- +goose Up
CREATE TABLE deployments (
	id             TEXT NOT NULL PRIMARY KEY,
	name           TEXT NOT NULL,
	release_id     TEXT NOT NULL,
	software       TEXT NOT NULL,
	version        TEXT NOT NULL,
	target         TEXT NOT NULL, -- JSON object
	plan           TEXT NOT NULL, -- rollout.Plan.String(), '' for none
	action         TEXT NOT NULL,
	max_deferral   BIGINT NOT NULL, -- nanoseconds
	windows        TEXT NOT NULL, -- JSON list
	limits         TEXT NOT NULL, -- JSON map
	min_interval   TEXT NOT NULL, -- JSON map of nanoseconds
	deadline       BIGINT NOT NULL,
	status         TEXT NOT NULL,
	reason         TEXT NOT NULL,
	wave           INTEGER NOT NULL,
	wave_started   BIGINT NOT NULL,
	bake_until     BIGINT NOT NULL,
	override       BOOLEAN NOT NULL,
	seed           BIGINT NOT NULL,
	total          INTEGER NOT NULL,
	wave_sizes     TEXT NOT NULL, -- JSON list
	rollback_of    TEXT NOT NULL,
	rolled_back_by TEXT NOT NULL,
	created_by     TEXT NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL,
	halted_at      BIGINT NOT NULL,
	finished_at    BIGINT NOT NULL,
	reached95_at   BIGINT NOT NULL,
	published_at   BIGINT NOT NULL,
	revision       BIGINT NOT NULL
);
CREATE INDEX deployments_created ON deployments (created_at, id);

-- No foreign key to deployments: members are written only with their deployment, in one
-- transaction, and deployments are never deleted, while checking the key row by row is the
-- larger part of inserting 100,000 members on PostgreSQL.
CREATE TABLE deployment_members (
	deployment_id TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	software      TEXT NOT NULL,
	wave          INTEGER NOT NULL,
	device_type   TEXT NOT NULL,
	region        TEXT NOT NULL,
	time_zone     TEXT NOT NULL,
	state         TEXT NOT NULL,
	seq           BIGINT NOT NULL, -- the uint64 sequence number's bits
	since         BIGINT NOT NULL,
	log           TEXT NOT NULL,
	offered_at    BIGINT NOT NULL,
	active        INTEGER NOT NULL, -- 1 unless state is terminal
	PRIMARY KEY (deployment_id, device_id)
);
-- A device is in at most one unfinished deployment per software; also the check-in's lookup.
CREATE UNIQUE INDEX deployment_members_active ON deployment_members (device_id, software) WHERE active = 1;
CREATE INDEX deployment_members_counts ON deployment_members (deployment_id, wave, state);
-- The devices updating right now, for concurrency limits. It covers every column the query
-- reads, which is what makes SQLite prefer it without statistics.
CREATE INDEX deployment_members_updating ON deployment_members (deployment_id, device_type, region, active, offered_at)
	WHERE active = 1 AND offered_at <> 0;
-- Each device's successes, for minimum intervals between updates.
CREATE INDEX deployment_members_success ON deployment_members (device_id, since) WHERE state = 'success';

CREATE TABLE deployment_events (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	deployment_id TEXT NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
	at            BIGINT NOT NULL,
	kind          TEXT NOT NULL,
	message       TEXT NOT NULL
);
CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id, id);

-- +goose Down
DROP TABLE deployment_events;
DROP TABLE deployment_members;
DROP TABLE deployments;
