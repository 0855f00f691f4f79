package chaos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Write is one write the store decided on, as recorded in its log:
// "accept|reject ID TOKEN UNIXNANOS HIGHEST", HIGHEST being the highest token
// accepted before it.
type Write struct {
	Accepted bool
	ID       string
	Token    uint64
	At       time.Time
	Highest  uint64
}

// String is the write's record, without the newline.
func (w Write) String() string {
	verdict := "reject"
	if w.Accepted {
		verdict = "accept"
	}
	return fmt.Sprintf("%s %s %d %d %d", verdict, w.ID, w.Token, w.At.UnixNano(), w.Highest)
}

// Store files in its directory.
const (
	storeState = "state"
	storeLog   = "writes"
)

// ReadWrites reads the record of the store in dir, in the order the store
// decided on the writes.
func ReadWrites(dir string) ([]Write, error) {
	data, err := os.ReadFile(filepath.Join(dir, storeLog))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseWrites(data)
}

// ParseWrites parses a store's record; like ParseEvents, it ignores a last
// line without its newline.
func ParseWrites(data []byte) ([]Write, error) {
	var writes []Write
	err := eachLine(data, func(n int, fields []string) error {
		if len(fields) != 5 || (fields[0] != "accept" && fields[0] != "reject") {
			return fmt.Errorf("store record %d: want accept|reject ID TOKEN UNIXNANOS HIGHEST, got %q", n, fields)
		}
		var nums [3]uint64
		for i, f := range fields[2:] {
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return fmt.Errorf("store record %d: %v", n, err)
			}
			nums[i] = v
		}
		writes = append(writes, Write{Accepted: fields[0] == "accept", ID: fields[1], Token: nums[0],
			At: time.Unix(0, int64(nums[1])), Highest: nums[2]})
		return nil
	})
	return writes, err
}
