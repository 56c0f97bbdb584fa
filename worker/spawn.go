package worker

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pipeweave/pipeweave/core/protocol"
)

// MaxSpawn bounds the runs one attempt may spawn (the orchestrator's default MAP_MAX_ITEMS; the
// node's own spawn.maxItems may be lower, and the callback's body cap, MAX_WORKER_BODY_BYTES,
// bounds their inputs).
const MaxSpawn = 10_000

// ErrNotSpawnNode is wrapped by SpawnOutputs and SpawnerOutput when the predecessor's output is
// not a spawn node's {"output": ..., "items": [...]}.
var ErrNotSpawnNode = errors.New("worker: not the output of a spawn node")

// Spawn asks the orchestrator to start a run of task taskID (a task of this worker's service)
// with input (encoded as JSON) once this attempt succeeds (docs/dynamic-pipelines.md, spawn).
// Only the run of a node declared with "spawn" in its pipeline may spawn: the entries travel
// with the success callback, which the orchestrator refuses (400, the run retried as a failed
// callback) otherwise. The node then waits for every spawned run; its successors read their
// outputs with SpawnOutputs. A failed attempt spawns nothing. Spawn is safe for concurrent use
// and keeps the entries in call order; past MaxSpawn it returns an error.
func Spawn(c *Context, taskID string, input any) error {
	data, err := json.Marshal(input)
	if err != nil {
		return fmt.Errorf("worker: spawn %q: encode the input: %w", taskID, err)
	}
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if len(c.r.spawn) >= MaxSpawn {
		return fmt.Errorf("worker: spawn %q: this attempt already spawns %d runs, the most it may", taskID, MaxSpawn)
	}
	c.r.spawn = append(c.r.spawn, protocol.SpawnRequest{TaskID: taskID, Input: data})
	return nil
}

// spawnDoc splits the output of spawn node taskID, a completed predecessor of this run.
func spawnDoc(c *Context, taskID string) (own json.RawMessage, items []json.RawMessage, err error) {
	up, ok := c.Upstream[taskID]
	if !ok {
		return nil, nil, fmt.Errorf("worker: spawn outputs of %q: it is not a completed predecessor of this run", taskID)
	}
	var doc struct {
		Output json.RawMessage   `json:"output"`
		Items  []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(up.Output, &doc); err != nil || doc.Items == nil {
		if err == nil {
			err = errors.New(`no "items"`)
		}
		return nil, nil, fmt.Errorf("worker: spawn outputs of %q: %w: %v", taskID, ErrNotSpawnNode, err)
	}
	return doc.Output, doc.Items, nil
}

// SpawnOutputs decodes the outputs of the runs that spawn node taskID (a completed predecessor
// of this run) spawned into one *T each, in the order it spawned them. Stored outputs are read
// from storage (up to 8 at once); entry i is nil when run i failed (failure modes continue and
// partial-merge) or its output was JSON null.
func SpawnOutputs[T any](c *Context, taskID string) ([]*T, error) {
	_, items, err := spawnDoc(c, taskID)
	if err != nil {
		return nil, err
	}
	return decodeOutputs[T](c, fmt.Sprintf("spawn outputs of %q", taskID), "spawned run", items)
}

// SpawnerOutput decodes the own output of spawn node taskID (a completed predecessor of this
// run), the one its handler returned; nil when it was JSON null.
func SpawnerOutput[T any](c *Context, taskID string) (*T, error) {
	own, _, err := spawnDoc(c, taskID)
	if err != nil {
		return nil, err
	}
	if own == nil {
		return nil, nil
	}
	out, err := decodeOutputs[T](c, fmt.Sprintf("spawner output of %q", taskID), "output", []json.RawMessage{own})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}
