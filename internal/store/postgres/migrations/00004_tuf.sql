-- The TUF repository: every signed metadata version, and the private keys of online roles.

-- +goose Up
CREATE TABLE tuf_metadata (
	role    TEXT NOT NULL,
	version BIGINT NOT NULL,
	data    BYTEA NOT NULL,
	PRIMARY KEY (role, version)
);

CREATE TABLE tuf_keys (
	role TEXT NOT NULL PRIMARY KEY,
	keys BYTEA NOT NULL -- concatenated 32-byte Ed25519 seeds
);

-- +goose Down
DROP TABLE tuf_keys;
DROP TABLE tuf_metadata;
