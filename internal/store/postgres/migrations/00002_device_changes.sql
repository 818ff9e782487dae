-- Device change feed: every device update appends a row, and each server polls for recent
-- rows to drop its cached copies, so a change made through one replica reaches the others
-- within about a second.

-- +goose Up
CREATE TABLE device_changes (
	device_id  TEXT NOT NULL,
	changed_at BIGINT NOT NULL
);
CREATE INDEX device_changes_at ON device_changes (changed_at);

-- +goose Down
DROP TABLE device_changes;
