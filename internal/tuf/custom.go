package tuf

import "encoding/json"

// jsonRaw encodes a target's custom metadata the way go-tuf carries it.
func jsonRaw(v map[string]any) (*json.RawMessage, error) {
	if len(v) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(b)
	return &raw, nil
}
