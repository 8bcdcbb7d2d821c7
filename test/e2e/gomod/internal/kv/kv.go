// Package kv is a small content-addressed key-value store with JSON snapshots.
package kv

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"sort"
	"sync"

	"example.com/dep/ring"
)

// Store maps names to values; values are kept once by their SHA-256.
type Store struct {
	mu      sync.Mutex
	names   map[string]string // name -> digest
	blobs   map[string][]byte // digest -> value
	history *ring.Buffer[string]
}

func New() *Store {
	return &Store{names: map[string]string{}, blobs: map[string][]byte{}, history: ring.New[string](8)}
}

// Put stores value under name and returns its digest.
func (s *Store) Put(name string, value []byte) string {
	sum := sha256.Sum256(value)
	d := "sha256:" + hex.EncodeToString(sum[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[name] = d
	s.blobs[d] = append([]byte(nil), value...)
	s.history.Push(name)
	return d
}

var ErrNotFound = errors.New("kv: not found")

func (s *Store) Get(name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.names[name]
	if !ok {
		return nil, ErrNotFound
	}
	return s.blobs[d], nil
}

// Recent lists the names written last, oldest first.
func (s *Store) Recent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history.Values()
}

type snapshot struct {
	Names map[string]string `json:"names"`
	Blobs map[string][]byte `json:"blobs"`
}

// Snapshot writes the store as gzip-compressed JSON.
func (s *Store) Snapshot(w io.Writer) error {
	s.mu.Lock()
	snap := snapshot{Names: s.names, Blobs: s.blobs}
	data, err := json.Marshal(snap)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	if _, err := zw.Write(data); err != nil {
		return err
	}
	return zw.Close()
}

// Restore reads a snapshot and checks every digest.
func Restore(r io.Reader) (*Store, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	var snap snapshot
	if err := json.NewDecoder(zr).Decode(&snap); err != nil {
		return nil, err
	}
	s := New()
	names := make([]string, 0, len(snap.Names))
	for n := range snap.Names {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := snap.Blobs[snap.Names[n]]
		if got := s.Put(n, v); got != snap.Names[n] {
			return nil, errors.New("kv: corrupt snapshot for " + n)
		}
	}
	return s, nil
}

// RoundTrip snapshots and restores, for self-checks.
func (s *Store) RoundTrip() (*Store, int, error) {
	var buf bytes.Buffer
	if err := s.Snapshot(&buf); err != nil {
		return nil, 0, err
	}
	n := buf.Len()
	t, err := Restore(&buf)
	return t, n, err
}
