-- The first schema. Times are Unix nanoseconds (0 = unset); lists and maps are JSON text.
-- Keep this file in step with store/postgres/migrations/00001_init.sql, which differs only
-- in BYTEA where this has BLOB, and the events ID column. Never edit an applied migration: add one.

-- +goose Up
CREATE TABLE devices (
	id               TEXT NOT NULL PRIMARY KEY,
	serial           TEXT NOT NULL,
	mac              TEXT NOT NULL,
	device_type      TEXT NOT NULL,
	hw_revision      TEXT NOT NULL,
	status           TEXT NOT NULL,
	public_key       BLOB,
	key_fingerprint  TEXT UNIQUE, -- NULL without a key
	key_revoked      BOOLEAN NOT NULL,
	auth_generation  BIGINT NOT NULL,
	clone_suspect    BOOLEAN NOT NULL,
	firmware_version TEXT NOT NULL,
	os               TEXT NOT NULL,
	kernel           TEXT NOT NULL,
	hostname         TEXT NOT NULL,
	interfaces       TEXT NOT NULL,
	attributes       TEXT NOT NULL,
	tags             TEXT NOT NULL,
	inventory_hash   TEXT NOT NULL,
	package_count    BIGINT NOT NULL,
	first_seen       BIGINT NOT NULL,
	last_seen        BIGINT NOT NULL,
	created_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	UNIQUE (device_type, serial)
);
CREATE INDEX devices_status ON devices (status, id);
CREATE INDEX devices_type ON devices (device_type, id);

-- device_tags indexes devices.tags for ListDevices.
CREATE TABLE device_tags (
	device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	tag       TEXT NOT NULL,
	PRIMARY KEY (device_id, tag)
);
CREATE INDEX device_tags_tag ON device_tags (tag, device_id);

CREATE TABLE packages (
	device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	idx       BIGINT NOT NULL,
	name      TEXT NOT NULL,
	version   TEXT NOT NULL,
	arch      TEXT NOT NULL,
	source    TEXT NOT NULL,
	purl      TEXT NOT NULL,
	PRIMARY KEY (device_id, idx)
);

CREATE TABLE events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	device_id   TEXT NOT NULL,
	kind        TEXT NOT NULL,
	level       TEXT NOT NULL,
	message     TEXT NOT NULL,
	data        TEXT NOT NULL,
	at          BIGINT NOT NULL,
	received_at BIGINT NOT NULL
);
CREATE INDEX events_device ON events (device_id, id);

CREATE TABLE enroll_tokens (
	id          TEXT NOT NULL PRIMARY KEY,
	description TEXT NOT NULL,
	hash        TEXT NOT NULL UNIQUE,
	max_uses    BIGINT NOT NULL,
	uses        BIGINT NOT NULL,
	expires_at  BIGINT NOT NULL,
	device_type TEXT NOT NULL,
	tags        TEXT NOT NULL,
	created_at  BIGINT NOT NULL,
	revoked_at  BIGINT NOT NULL
);

CREATE TABLE nonces (
	nonce      TEXT NOT NULL PRIMARY KEY,
	expires_at BIGINT NOT NULL
);
CREATE INDEX nonces_expires ON nonces (expires_at);

CREATE TABLE device_groups (
	name        TEXT NOT NULL PRIMARY KEY,
	description TEXT NOT NULL,
	filter      TEXT NOT NULL, -- empty for a static group
	created_at  BIGINT NOT NULL
);

CREATE TABLE group_members (
	group_name TEXT NOT NULL REFERENCES device_groups (name) ON DELETE CASCADE,
	device_id  TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	PRIMARY KEY (group_name, device_id)
);
CREATE INDEX group_members_device ON group_members (device_id);

CREATE TABLE secrets (
	name  TEXT NOT NULL PRIMARY KEY,
	value BLOB NOT NULL
);

CREATE TABLE api_tokens (
	id         TEXT NOT NULL PRIMARY KEY,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	hash       TEXT NOT NULL UNIQUE,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	revoked_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE api_tokens;
DROP TABLE secrets;
DROP TABLE group_members;
DROP TABLE device_groups;
DROP TABLE nonces;
DROP TABLE enroll_tokens;
DROP TABLE events;
DROP TABLE packages;
DROP TABLE device_tags;
DROP TABLE devices;
