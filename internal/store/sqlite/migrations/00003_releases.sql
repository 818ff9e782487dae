-- Releases, their artifacts (blobs by SHA-256) and their SBOM components.

-- +goose Up
CREATE TABLE releases (
	id           TEXT NOT NULL PRIMARY KEY,
	name         TEXT NOT NULL,
	version      TEXT NOT NULL,
	device_types TEXT NOT NULL, -- JSON list
	hw_revisions TEXT NOT NULL, -- JSON list
	notes        TEXT NOT NULL,
	state        TEXT NOT NULL,
	sbom_format  TEXT NOT NULL DEFAULT '',
	created_at   BIGINT NOT NULL,
	published_at BIGINT NOT NULL DEFAULT 0,
	withdrawn_at BIGINT NOT NULL DEFAULT 0,
	UNIQUE (name, version)
);

CREATE TABLE release_artifacts (
	release_id TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	delta_from TEXT NOT NULL,
	digest     TEXT NOT NULL,
	size       BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (release_id, name)
);
CREATE INDEX release_artifacts_digest ON release_artifacts (digest);

CREATE TABLE release_components (
	release_id TEXT NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
	idx        INTEGER NOT NULL,
	name       TEXT NOT NULL,
	version    TEXT NOT NULL,
	purl       TEXT NOT NULL,
	type       TEXT NOT NULL,
	supplier   TEXT NOT NULL,
	licenses   TEXT NOT NULL, -- JSON list
	hashes     TEXT NOT NULL, -- JSON map
	PRIMARY KEY (release_id, idx)
);
CREATE INDEX release_components_purl ON release_components (purl);

-- +goose Down
DROP TABLE release_components;
DROP TABLE release_artifacts;
DROP TABLE releases;
