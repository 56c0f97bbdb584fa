package worker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pipeweave/pipeweave/core/storage"
)

// ErrNotMapNode is wrapped by MapOutputs when the predecessor's output is not a map node's
// array of item outputs.
var ErrNotMapNode = errors.New("worker: not the output of a map node")

// mapReadParallel bounds the item outputs MapOutputs reads from storage at once.
const mapReadParallel = 8

// MapOutputs decodes the output of map node taskID, a completed predecessor of this run, into
// one *T per item in index order (docs/dynamic-pipelines.md). A map node's output is the JSON
// array of its items' outputs: an item's output itself when it was kept inline,
// {"outputPath": "runs/<itemRunId>/output.json"} when it was stored (MapOutputs reads it from
// storage, up to 8 at once), and null for an item that failed, which happens under failure mode
// continue or partial-merge. Entry i is nil when item i failed, or when its output was JSON
// null. An error names the item that could not be read or decoded.
//
// Outside an orchestrator (RunLocal) the upstream output given is the array itself: entries that
// are stored references cannot be read there, and are an error.
func MapOutputs[T any](c *Context, taskID string) ([]*T, error) {
	up, ok := c.Upstream[taskID]
	if !ok {
		return nil, fmt.Errorf("worker: map outputs of %q: it is not a completed predecessor of this run", taskID)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(up.Output, &raw); err != nil {
		return nil, fmt.Errorf("worker: map outputs of %q: %w: %v", taskID, ErrNotMapNode, err)
	}
	return decodeOutputs[T](c, fmt.Sprintf("map outputs of %q", taskID), "item", raw)
}

// decodeOutputs decodes the entries of raw (inline outputs, stored references, null) into one
// *T each, reading stored ones up to mapReadParallel at once; what and noun name them in errors.
func decodeOutputs[T any](c *Context, what, noun string, raw []json.RawMessage) ([]*T, error) {
	out := make([]*T, len(raw))
	errs := make([]error, len(raw))
	decode := func(i int, data []byte) {
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			return
		}
		v := new(T)
		if err := json.Unmarshal(data, v); err != nil {
			errs[i] = fmt.Errorf("worker: %s: decode %s %d: %w", what, noun, i, err)
			return
		}
		out[i] = v
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, mapReadParallel)
	for i, item := range raw {
		path, stored := itemOutputRef(item)
		if !stored {
			decode(i, item)
			continue
		}
		if c.r.backend == nil {
			errs[i] = fmt.Errorf("worker: %s: %s %d is stored at %s, which a local run cannot read", what, noun, i, path)
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := storage.ReadAll(c, c.r.backend, path)
			if err != nil {
				errs[i] = fmt.Errorf("worker: %s: read %s %d at %s: %w", what, noun, i, path, err)
				return
			}
			decode(i, data)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first one's: one message, however many failed to read
		}
	}
	return out, nil
}

// itemOutputRef says whether an entry of a map node's output is a stored item output's
// reference, {"outputPath": "runs/<id>/output.json"} and nothing else, and returns its path.
func itemOutputRef(item json.RawMessage) (string, bool) {
	if t := bytes.TrimSpace(item); len(t) == 0 || t[0] != '{' {
		return "", false
	}
	var ref map[string]json.RawMessage
	if json.Unmarshal(item, &ref) != nil || len(ref) != 1 {
		return "", false
	}
	var path string
	if json.Unmarshal(ref["outputPath"], &path) != nil {
		return "", false
	}
	if !strings.HasPrefix(path, "runs/") || !strings.HasSuffix(path, "/output.json") || strings.Count(path, "/") != 2 {
		return "", false
	}
	return path, true
}
