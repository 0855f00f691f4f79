package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// KeyFlags is written as the flags of every lock key consul-elect holds. A key
// at a lock path with other flags belongs to someone else: it is reported as
// ErrConflict and never taken over. ("consul-e" in ASCII.)
const KeyFlags uint64 = 0x636f6e73756c2d65

// valueVersion is the version of the JSON document written as the key's value.
const valueVersion = 1

// Value is the document consul-elect writes as a lock key's value when it
// acquires it: who leads, from which node, since when.
type Value struct {
	Version     int               `json:"v"`
	CandidateID string            `json:"candidate_id"`
	Node        string            `json:"node,omitempty"`
	AcquiredAt  time.Time         `json:"acquired_at"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// Token is the fencing token of the term, written by Proclaim: the
	// acquiring write cannot know its own index, and a later write moves
	// the key's ModifyIndex past it.
	Token uint64 `json:"token,omitempty"`
	// Handover, when set, asks for a planned switchover to candidate To: the
	// leader drains and releases, keeping the value, and while the key is
	// free the other candidates leave it to To for a while.
	Handover *Handover `json:"handover,omitempty"`
	// From is the candidate that handed the key to CandidateID in one write
	// (Client.Transfer), empty when CandidateID acquired it itself.
	From string `json:"from,omitempty"`
	// Released is written by the unlock that frees the key when its holder,
	// or an operator, lets it go: no lock-delay applies. A key seen freed
	// without it was freed by the end of its holder's session.
	Released bool `json:"released,omitempty"`
}

// Handover is a switchover request in a lock key's value.
type Handover struct {
	To string    `json:"to"`
	At time.Time `json:"at"`
}

// FencingToken is the fencing token of the term that wrote v into e: the raft
// index of its acquiring write, which is e's ModifyIndex until the leader
// proclaims new metadata, and v.Token after that.
func FencingToken(e Entry, v Value) uint64 {
	if v.Token != 0 {
		return v.Token
	}
	return e.ModifyIndex
}

// maxValueBytes bounds what DecodeValue reads; Consul's own limit is 512 KiB.
const maxValueBytes = 512 * 1024

// EncodeValue returns the JSON document for v, with the current version.
func EncodeValue(v Value) []byte {
	v.Version = valueVersion
	data, err := json.Marshal(v)
	if err != nil {
		// Only strings, a time and a string map: Marshal cannot fail.
		panic(fmt.Sprintf("consul: encoding lock value: %v", err))
	}
	return data
}

// DecodeValue parses a lock key's value. An empty value decodes to the zero
// Value (a key created by a bare acquire); anything else must be a document
// of a version this package knows.
func DecodeValue(data []byte) (Value, error) {
	var v Value
	if len(data) == 0 {
		return v, nil
	}
	if len(data) > maxValueBytes {
		return Value{}, fmt.Errorf("lock value is %d bytes, more than %d", len(data), maxValueBytes)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return Value{}, fmt.Errorf("lock value is not a consul-elect document: %w", err)
	}
	if v.Version != valueVersion {
		return Value{}, errors.New("lock value has unknown version " + fmt.Sprint(v.Version))
	}
	return v, nil
}

// ReleasedValue is data, a lock key's value, as the unlock that releases
// the key writes it: with Released set. A value that is not a consul-elect
// document is returned as it is.
func ReleasedValue(data []byte) []byte {
	v, err := DecodeValue(data)
	if err != nil || len(data) == 0 {
		return data
	}
	v.Released = true
	return EncodeValue(v)
}
