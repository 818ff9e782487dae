// Package tuftest holds test helpers for the tuf package: an in-memory Store.
//
// It is for tests of tuf and of code built on it (the agent's TUF client); it is not a
// production store and keeps nothing across processes.
package tuftest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync"

	"github.com/rampart-iot/rampart"
)

// Store is an in-memory tuf.Store. The zero value is not usable; call NewStore.
type Store struct {
	mu      sync.Mutex
	docs    map[string]map[int64][]byte
	current map[string]int64
	keys    map[string][]ed25519.PrivateKey
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{
		docs:    map[string]map[int64][]byte{},
		current: map[string]int64{},
		keys:    map[string][]ed25519.PrivateKey{},
	}
}

// PutMetadata stores a copy of data as version of role and makes it current.
func (s *Store) PutMetadata(_ context.Context, role string, version int64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.docs[role] == nil {
		s.docs[role] = map[int64][]byte{}
	}
	s.docs[role][version] = slices.Clone(data)
	s.current[role] = version
	return nil
}

// Metadata returns a copy of version of role.
func (s *Store) Metadata(_ context.Context, role string, version int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[role][version]
	if !ok {
		return nil, fmt.Errorf("%s v%d: %w", role, version, rampart.ErrNotFound)
	}
	return slices.Clone(d), nil
}

// CurrentVersion returns the version of role stored last.
func (s *Store) CurrentVersion(_ context.Context, role string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.current[role]
	if !ok {
		return 0, fmt.Errorf("%s: %w", role, rampart.ErrNotFound)
	}
	return v, nil
}

// PutKeys replaces the keys of role.
func (s *Store) PutKeys(_ context.Context, role string, keys []ed25519.PrivateKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[role] = slices.Clone(keys)
	return nil
}

// Keys returns the keys of role.
func (s *Store) Keys(_ context.Context, role string) ([]ed25519.PrivateKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[role]
	if !ok {
		return nil, fmt.Errorf("%s keys: %w", role, rampart.ErrNotFound)
	}
	return slices.Clone(k), nil
}
