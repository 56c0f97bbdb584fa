package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/pipeweave/pipeweave/core/inputschema"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// InputValidationError refuses an input that breaks its task's schema in strict mode. Errors
// are the violations by task id; for an enqueue, Items has them per request index.
type InputValidationError struct {
	Errors protocol.ValidationErrors
	Items  map[int]protocol.ValidationErrors
}

func (e *InputValidationError) Error() string { return "Input validation failed" }

// Unwrap makes it an ErrInvalid (400).
func (e *InputValidationError) Unwrap() error { return ErrInvalid }

// CheckValidationMode accepts "", strict, warn and none.
func CheckValidationMode(mode string) error {
	switch mode {
	case "", protocol.ValidationStrict, protocol.ValidationWarn, protocol.ValidationNone:
		return nil
	}
	return invalid("INVALID_VALIDATION_MODE", "validationMode must be %q, %q (the default) or %q, not %q",
		protocol.ValidationStrict, protocol.ValidationWarn, protocol.ValidationNone, mode)
}

// validatorCache keeps compiled validators by schema hash. The hash names the schemas' content,
// so an entry never goes stale and engines may share it; it is cleared when it grows past its
// bound (a registration of new schemas is rare).
type validatorCache struct {
	mu sync.Mutex
	m  map[string]*inputschema.Validator
}

const validatorCacheSize = 4096

var validators = &validatorCache{m: map[string]*inputschema.Validator{}}

func (c *validatorCache) get(hash string) *inputschema.Validator {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[hash]
}

func (c *validatorCache) put(hash string, v *inputschema.Validator) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= validatorCacheSize {
		clear(c.m)
	}
	c.m[hash] = v
}

// compileTaskSchemas compiles a registered task's schemas and returns them as stored, with
// their hash ("" when the task has none).
func compileTaskSchemas(t *protocol.TaskDefinition) (form, jsonSchema json.RawMessage, hash string, err error) {
	v, err := inputschema.Compile(t.InputSchema, t.InputJSONSchema)
	if err != nil {
		return nil, nil, "", err
	}
	if !inputschema.Empty(t.InputSchema) {
		form = t.InputSchema
	}
	if !inputschema.Empty(t.InputJSONSchema) {
		jsonSchema = t.InputJSONSchema
	}
	hash = inputschema.Hash(form, jsonSchema)
	if hash != "" {
		validators.put(hash, v)
	}
	return form, jsonSchema, hash, nil
}

// compileSchemasOf compiles a registered task's schemas into its row; a schema that does not
// compile refuses the registration, naming the task.
func compileSchemasOf(t *protocol.TaskDefinition, row *taskRow) error {
	form, jsonSchema, hash, err := compileTaskSchemas(t)
	if err != nil {
		e := invalid("INVALID_INPUT_SCHEMA", "task %q: %v", t.ID, err)
		e.Details = map[string]any{"taskId": t.ID, "schemaError": err.Error()}
		return e
	}
	row.InputSchema, row.InputJSONSchema, row.InputSchemaHash = form, jsonSchema, hash
	return nil
}

type taskSchemas struct {
	form, json json.RawMessage
	hash       string
}

// readTaskSchemas reads the schemas of the tasks among ids (in one query).
func (e *Engine) readTaskSchemas(ctx context.Context, ids []string) (map[string]taskSchemas, error) {
	rows, err := queries.TaskInputSchemas(ctx, e.db, ids)
	if err != nil {
		return nil, fmt.Errorf("read input schemas: %w", err)
	}
	out := map[string]taskSchemas{}
	for _, r := range rows {
		out[r.ID] = taskSchemas{form: r.InputSchema, json: r.InputJsonSchema, hash: r.InputSchemaHash}
	}
	return out, nil
}

// validatorsFor returns the validators of tasks by their schema hash (want: task id → hash;
// tasks without a schema are left out). Only hashes not compiled yet in this process cost a
// query, one for all of them.
func (e *Engine) validatorsFor(ctx context.Context, want map[string]string) (map[string]*inputschema.Validator, error) {
	out := map[string]*inputschema.Validator{}
	var missing []string
	for id, hash := range want {
		if hash == "" {
			continue
		}
		if v := validators.get(hash); v != nil {
			if v.HasSchema() {
				out[id] = v
			}
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	found, err := e.readTaskSchemas(ctx, missing)
	if err != nil {
		return nil, err
	}
	for id, s := range found {
		if v := e.compiled(id, s); v != nil {
			out[id] = v
		}
	}
	return out, nil
}

// compiled returns the validator of a task's stored schemas, compiling them on a cache miss;
// nil when the task has none.
func (e *Engine) compiled(taskID string, s taskSchemas) *inputschema.Validator {
	if s.hash == "" {
		return nil
	}
	if v := validators.get(s.hash); v != nil {
		return v
	}
	v, err := inputschema.Compile(s.form, s.json)
	if err != nil {
		// A schema stored before migration 006 was never compiled. It is not the caller's
		// fault and does not block its work: remembered as no schema, logged once.
		e.log.Error("a stored input schema does not compile; inputs of this task are not validated until it registers again",
			"task", taskID, "err", err)
		v = &inputschema.Validator{}
	}
	validators.put(s.hash, v)
	if !v.HasSchema() {
		return nil
	}
	return v
}

// checkEnqueueInputs validates each item's input against its task's schema in the item's
// validationMode: strict violations refuse the whole request; warn ones are kept as the
// item's warnings.
func (e *Engine) checkEnqueueInputs(ctx context.Context, items []enqueueItem) error {
	want := map[string]string{}
	for i := range items {
		if it := &items[i]; it.req.ValidationMode != protocol.ValidationNone && it.task.schemaHash != "" {
			want[it.req.TaskID] = it.task.schemaHash
		}
	}
	if len(want) == 0 {
		return nil
	}
	vals, err := e.validatorsFor(ctx, want)
	if err != nil {
		return err
	}
	var refused map[int]protocol.ValidationErrors
	for i := range items {
		it := &items[i]
		v := vals[it.req.TaskID]
		if it.req.ValidationMode == protocol.ValidationNone || v == nil {
			continue
		}
		errs := v.Validate(it.req.Input)
		if len(errs) == 0 {
			continue
		}
		byTask := protocol.ValidationErrors{it.req.TaskID: errs}
		if it.req.ValidationMode == protocol.ValidationStrict {
			if refused == nil {
				refused = map[int]protocol.ValidationErrors{}
			}
			refused[i] = byTask
			continue
		}
		it.warnings = byTask
	}
	if refused != nil {
		out := &InputValidationError{Errors: protocol.ValidationErrors{}, Items: refused}
		for _, byTask := range refused {
			for id, errs := range byTask {
				out.Errors[id] = append(out.Errors[id], errs...)
			}
		}
		return out
	}
	for i := range items {
		if items[i].warnings != nil {
			e.log.Warn("input validation warnings", "task", items[i].req.TaskID, "index", strconv.Itoa(i), "errors", len(items[i].warnings[items[i].req.TaskID]))
		}
	}
	return nil
}

// checkTriggerInput validates a pipeline's input against the schema of every entry task.
// Strict mode refuses it with every violation; warn mode returns them.
func (e *Engine) checkTriggerInput(ctx context.Context, mode string, input json.RawMessage, entry []string, tasks map[string]taskInfo) (protocol.ValidationErrors, error) {
	if mode == protocol.ValidationNone {
		return nil, nil
	}
	want := map[string]string{}
	for _, id := range entry {
		want[id] = tasks[id].SchemaHash
	}
	vals, err := e.validatorsFor(ctx, want)
	if err != nil {
		return nil, err
	}
	found := protocol.ValidationErrors{}
	for _, id := range entry {
		if v := vals[id]; v != nil {
			if errs := v.Validate(input); len(errs) > 0 {
				found[id] = errs
			}
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	if mode == protocol.ValidationStrict {
		return nil, &InputValidationError{Errors: found}
	}
	return found, nil
}

// InputSchemaInfo is what a task registered of input schemas: the field-list schema and the
// JSON Schema, each nil when the task has none.
type InputSchemaInfo struct {
	TaskID     string
	Schema     json.RawMessage
	JSONSchema json.RawMessage
}

// TaskInputSchema returns the schemas a task registered.
func (e *Engine) TaskInputSchema(ctx context.Context, taskID string) (InputSchemaInfo, error) {
	found, err := e.readTaskSchemas(ctx, []string{taskID})
	if err != nil {
		return InputSchemaInfo{}, err
	}
	s, ok := found[taskID]
	if !ok {
		return InputSchemaInfo{}, notFound("TASK_NOT_FOUND", "task %q is not registered", taskID)
	}
	info := InputSchemaInfo{TaskID: taskID}
	if !inputschema.Empty(s.form) {
		info.Schema = s.form
	}
	if !inputschema.Empty(s.json) {
		info.JSONSchema = s.json
	}
	return info, nil
}

// ValidateInputResult says whether an input satisfies a task's schemas, and if not how not.
type ValidateInputResult struct {
	Valid  bool
	Errors []protocol.ValidationError
}

// ValidateTaskInput checks an input against a task's schemas without running anything; a
// task without a schema accepts every input.
func (e *Engine) ValidateTaskInput(ctx context.Context, taskID string, input json.RawMessage) (ValidateInputResult, error) {
	found, err := e.readTaskSchemas(ctx, []string{taskID})
	if err != nil {
		return ValidateInputResult{}, err
	}
	s, ok := found[taskID]
	if !ok {
		return ValidateInputResult{}, notFound("TASK_NOT_FOUND", "task %q is not registered", taskID)
	}
	res := ValidateInputResult{Valid: true, Errors: []protocol.ValidationError{}}
	if v := e.compiled(taskID, s); v != nil {
		if errs := v.Validate(input); len(errs) > 0 {
			res.Valid, res.Errors = false, errs
		}
	}
	return res, nil
}
