// Package store is a node's state on disk: an embedded, transactional
// key-value store (bbolt: one file, ACID transactions, single writer,
// no server, a file lock that keeps a second daemon off the same state
// directory) holding the node's job table, the migrations in flight and
// their phase, where jobs that left went, and counters. A node daemon
// that restarts reads it to take back its jobs and settle what it was
// doing when it stopped.
//
// What belongs here: opening the file (with its schema version), and
// typed access to the buckets. What does not: what the records mean
// (package node).
//
// Layout: bucket "meta" holds "schema" (a decimal version) and counters;
// every other bucket maps a key (a job id) to one JSON value.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Schema is the layout version this code reads and writes.
const Schema = 1

// Buckets.
const (
	Jobs       = "jobs"       // job id → the job's record
	Migrations = "migrations" // job id → a migration in flight
	Moved      = "moved"      // job id → the node it went to
	Peers      = "peers"      // node id → its gossip address, to rejoin after a restart
	meta       = "meta"
)

// ErrLocked: another process has the store open.
var ErrLocked = errors.New("another ferry node uses this state directory")

// DB is an open store.
type DB struct {
	db *bolt.DB
}

// Open opens (or creates) the store at path.
func Open(path string) (*DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("node state %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("node state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists([]byte(meta))
		if err != nil {
			return err
		}
		if v := m.Get([]byte("schema")); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil || n != Schema {
				return fmt.Errorf("schema version %q, this ferry reads %d", v, Schema)
			}
		} else if err := m.Put([]byte("schema"), []byte(strconv.Itoa(Schema))); err != nil {
			return err
		}
		for _, b := range []string{Jobs, Migrations, Moved, Peers} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("node state %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the store.
func (d *DB) Close() error { return d.db.Close() }

// Put stores v (as JSON) under key in bucket, durably.
func (d *DB) Put(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store %s/%s: %w", bucket, key, err)
	}
	err = d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Put([]byte(key), b)
	})
	if err != nil {
		return fmt.Errorf("store %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Get reads key of bucket into v; false if there is none.
func (d *DB) Get(bucket, key string, v any) (bool, error) {
	var raw []byte
	d.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte(bucket)).Get([]byte(key)); b != nil {
			raw = append([]byte(nil), b...)
		}
		return nil
	})
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("store %s/%s: %w", bucket, key, err)
	}
	return true, nil
}

// Delete removes key from bucket.
func (d *DB) Delete(bucket, key string) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("store %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Each calls f with every key of bucket and its raw JSON value, in key
// order.
func (d *DB) Each(bucket string, f func(key string, raw []byte) error) error {
	return d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			return f(string(k), v)
		})
	})
}

// Next increments the counter name and returns its new value, durably.
func (d *DB) Next(name string) (uint64, error) {
	var n uint64
	err := d.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket([]byte(meta))
		key := []byte("counter/" + name)
		if v := m.Get(key); v != nil {
			n, _ = strconv.ParseUint(string(v), 10, 64)
		}
		n++
		return m.Put(key, []byte(strconv.FormatUint(n, 10)))
	})
	if err != nil {
		return 0, fmt.Errorf("store counter %s: %w", name, err)
	}
	return n, nil
}
