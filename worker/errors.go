package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Error codes the worker reports for failures it detects itself.
const (
	// CodeTaskError is the code of a plain (non-TaskError) error returned by a handler.
	CodeTaskError = "TASK_ERROR"
	// CodePanic is the code of a handler that panicked.
	CodePanic = "PANIC"
	// CodeTimeout is the code of a handler that ran past Options.Timeout.
	CodeTimeout = "TIMEOUT"
	// CodeInvalidOutput is the code of an output that cannot be encoded as JSON.
	CodeInvalidOutput = "INVALID_OUTPUT"
	// CodeStorage is the code of an attempt that could not read its input or write its results.
	CodeStorage = "STORAGE_ERROR"
	// CodeShutdown is the code of an attempt stopped because the worker shut down.
	CodeShutdown = "WORKER_SHUTDOWN"
)

// maxDetails bounds the JSON of TaskError.Details appended to the reported error message.
const maxDetails = 4096

// TaskError is a handler's failure with a machine-readable code and a retry decision. Return it
// (or an error wrapping it) from a Handler.
type TaskError struct {
	// Code is the machine-readable error code, such as "INVALID_PDF".
	Code string
	// Message is the human-readable sentence.
	Message string
	// Retryable says whether the orchestrator may retry the attempt (if it has retries left).
	Retryable bool
	// Details is extra information, encoded as JSON. The callback protocol has no field for
	// it, so it is appended to the reported error message (up to 4 KiB) and logged.
	Details any
}

// Error returns "Code: Message".
func (e *TaskError) Error() string {
	switch {
	case e.Code == "":
		return e.Message
	case e.Message == "":
		return e.Code
	default:
		return e.Code + ": " + e.Message
	}
}

// Fail returns a TaskError that is not retried.
func Fail(code, message string) *TaskError {
	return &TaskError{Code: code, Message: message}
}

// Retry returns a TaskError that the orchestrator retries while the task has retries left.
func Retry(code, message string) *TaskError {
	return &TaskError{Code: code, Message: message, Retryable: true}
}

// failure is a failed attempt as the callback reports it.
type failure struct {
	code      string
	message   string
	retryable bool
}

// classify turns a handler's error into the failure to report; hctx is the handler's context.
func classify(hctx context.Context, err error) failure {
	var te *TaskError
	if errors.As(err, &te) {
		msg := te.Message
		if err != error(te) {
			msg = err.Error() // wrapped: keep the context the wrapping added
		}
		if msg == "" {
			msg = te.Error()
		}
		if te.Details != nil {
			if raw, jerr := json.Marshal(te.Details); jerr == nil {
				if len(raw) > maxDetails {
					raw = append(raw[:maxDetails:maxDetails], "…"...)
				}
				msg += " (details: " + string(raw) + ")"
			}
		}
		code := te.Code
		if code == "" {
			code = CodeTaskError
		}
		return failure{code: code, message: msg, retryable: te.Retryable}
	}
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(hctx.Err(), context.DeadlineExceeded) {
		return failure{code: CodeTimeout, message: fmt.Sprintf("the task exceeded its timeout: %v", err), retryable: true}
	}
	return failure{code: CodeTaskError, message: err.Error(), retryable: true}
}
