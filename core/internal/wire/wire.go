// Package wire is the one conversion between the engine's types and their wire shapes in
// core/protocol: the answers the API encodes (and core's public results) from the engine's
// values, and the engine's requests from the bodies the API decodes. The engine's types carry
// no JSON tags; what the API sends is decided here and in core/protocol only.
//
// Where an engine type has the fields of its wire shape, the conversion is Go's struct
// conversion, so the compiler checks that the two still match; nested types that differ are
// converted field by field.
package wire

import (
	"encoding/json"

	"github.com/pipeweave/pipeweave/core/internal/engine"
	"github.com/pipeweave/pipeweave/core/protocol"
)

// list converts every element of xs with f; nil stays nil (null on the wire).
func list[T, W any](xs []T, f func(T) W) []W {
	if xs == nil {
		return nil
	}
	out := make([]W, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// page converts a page of a listing, its items with f.
func page[T, W any](p engine.Page[T], f func(T) W) protocol.Page[W] {
	return protocol.Page[W]{Items: list(p.Items, f), NextCursor: p.NextCursor}
}

// The answers of the API.

// Run is a task run's wire shape.
func Run(r engine.Run) protocol.TaskRun { return protocol.TaskRun(r) }

// RunPage is a page of task runs' wire shape.
func RunPage(p engine.Page[engine.Run]) protocol.Page[protocol.TaskRun] { return page(p, Run) }

// Services are the registered services' wire shapes.
func Services(s []engine.Service) []protocol.Service {
	return list(s, func(s engine.Service) protocol.Service { return protocol.Service(s) })
}

// Task is a task definition's wire shape.
func Task(t engine.Task) protocol.Task { return protocol.Task(t) }

// TaskPause is a task's pause state's wire shape.
func TaskPause(p engine.TaskPause) protocol.TaskPause { return protocol.TaskPause(p) }

// Tasks are task definitions' wire shapes.
func Tasks(t []engine.Task) []protocol.Task { return list(t, Task) }

// History is a task's code versions' wire shape.
func History(h []engine.HistoryEntry) []protocol.HistoryEntry {
	return list(h, func(h engine.HistoryEntry) protocol.HistoryEntry { return protocol.HistoryEntry(h) })
}

// ServiceDetail is a service's wire shape with its tasks.
func ServiceDetail(s engine.ServiceDetail) protocol.ServiceDetail {
	return protocol.ServiceDetail{ID: s.ID, Version: s.Version, BaseURL: s.BaseURL, RegisteredAt: s.RegisteredAt,
		UpdatedAt: s.UpdatedAt, Tasks: Tasks(s.Tasks)}
}

// QueueStatus is the run counts' wire shape.
func QueueStatus(q engine.QueueStatus) protocol.QueueStatus { return protocol.QueueStatus(q) }

// ProcessSummary is a processed batch's wire shape.
func ProcessSummary(s engine.ProcessSummary) protocol.ProcessSummary {
	return protocol.ProcessSummary(s)
}

// PurgeSummary is a purge's wire shape.
func PurgeSummary(s engine.PurgeSummary) protocol.PurgeSummary { return protocol.PurgeSummary(s) }

// MaintenanceStatus is the maintenance status' wire shape.
func MaintenanceStatus(s engine.MaintenanceStatus) protocol.MaintenanceStatus {
	return protocol.MaintenanceStatus(s)
}

// DLQEntry is a dead-letter entry's wire shape.
func DLQEntry(d engine.DLQEntry) protocol.DLQEntry { return protocol.DLQEntry(d) }

// DLQPage is a page of the dead-letter queue's wire shape.
func DLQPage(p engine.DLQPage) protocol.DLQPage {
	return protocol.DLQPage{Items: list(p.Items, DLQEntry), Total: p.Total, NextCursor: p.NextCursor}
}

// DLQRetryResult is a DLQ retry's wire shape.
func DLQRetryResult(r engine.DLQRetryResult) protocol.DLQRetryResult {
	return protocol.DLQRetryResult(r)
}

// RetryAllResult is a bulk DLQ retry's wire shape.
func RetryAllResult(r engine.RetryAllResult) protocol.RetryAllResult {
	return protocol.RetryAllResult{Retried: r.Retried, More: r.More,
		Runs:   list(r.Runs, func(d engine.DLQRetried) protocol.DLQRetried { return protocol.DLQRetried(d) }),
		Failed: list(r.Failed, func(d engine.DLQRetryFailed) protocol.DLQRetryFailed { return protocol.DLQRetryFailed(d) })}
}

// EnqueueResults are an enqueue's results' wire shapes.
func EnqueueResults(r []engine.EnqueueResult) []protocol.EnqueueResult {
	return list(r, func(r engine.EnqueueResult) protocol.EnqueueResult { return protocol.EnqueueResult(r) })
}

// Pipeline is a pipeline's wire shape with its current structure.
func Pipeline(p engine.Pipeline) protocol.Pipeline {
	return protocol.Pipeline{ID: p.ID, ServiceID: p.ServiceID, Implicit: p.Implicit, EntryTasks: p.EntryTasks,
		FailureMode: p.FailureMode, Description: p.Description, Tasks: p.Tasks, Valid: p.Valid, Errors: p.Errors,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt, PausedAt: p.PausedAt, TimeoutMs: p.TimeoutMs, Nodes: p.Nodes}
}

// PipelinePause is a pipeline's pause state's wire shape.
func PipelinePause(p engine.PipelinePause) protocol.PipelinePause { return protocol.PipelinePause(p) }

// Pipelines are pipelines' wire shapes.
func Pipelines(p []engine.Pipeline) []protocol.Pipeline { return list(p, Pipeline) }

// DryRun is a dry run's wire shape.
func DryRun(d engine.DryRun) protocol.DryRun {
	return protocol.DryRun{Valid: d.Valid, Warnings: d.Warnings, Errors: d.Errors,
		ExecutionPlan: list(d.ExecutionPlan, func(s engine.PlanStep) protocol.PlanStep { return protocol.PlanStep(s) })}
}

// TriggerResult is a trigger's wire shape.
func TriggerResult(r engine.TriggerResult) protocol.TriggerResult {
	return protocol.TriggerResult{PipelineRunID: r.PipelineRunID, Status: r.Status, InputPath: r.InputPath,
		EntryTasks: r.EntryTasks, QueuedTasks: r.QueuedTasks, ValidationWarnings: r.ValidationWarnings}
}

// PipelineRun is a pipeline run's wire shape with, in detail, its task runs.
func PipelineRun(r engine.PipelineRun) protocol.PipelineRun {
	out := protocol.PipelineRun{ID: r.ID, PipelineID: r.PipelineID, Status: r.Status, FailureMode: r.FailureMode,
		Priority: r.Priority, Metadata: r.Metadata, InputPath: r.InputPath, Error: r.Error, CreatedAt: r.CreatedAt,
		CompletedAt: r.CompletedAt, Snapshot: r.Snapshot, Tasks: list(r.Tasks, runTask), ScheduleID: r.ScheduleID,
		ScheduleSlot: r.ScheduleSlot, TimeoutMs: r.TimeoutMs, Deadline: r.Deadline, ErrorCode: r.ErrorCode, Maps: r.Maps}
	subPipelineRelatives(&out, r)
	return out
}

// subPipelineRelatives sets out's links to the parent and children of sub-pipeline run r.
func subPipelineRelatives(out *protocol.PipelineRun, r engine.PipelineRun) {
	if r.Parent != nil {
		out.ParentRunID, out.ParentNodeRunID, out.ParentTaskID = r.Parent.RunID, r.Parent.NodeRunID, r.Parent.TaskID
	}
	for _, c := range r.Children {
		out.ChildRunIDs = append(out.ChildRunIDs, c.RunID)
		out.Children = append(out.Children, protocol.ChildPipeline{RunID: c.RunID, PipelineID: c.PipelineID, Status: c.Status,
			TaskID: c.TaskID, NodeRunID: c.NodeRunID})
	}
}

func runTask(t engine.RunTask) protocol.PipelineRunTask {
	return protocol.PipelineRunTask{TaskRun: Run(t.Run), SupersededBy: t.SupersededBy, CodeChanged: t.CodeChanged,
		PreviousCodeVersion: t.PreviousCodeVersion}
}

// PipelineRunPage is a page of pipeline runs' wire shape.
func PipelineRunPage(p engine.Page[engine.PipelineRun]) protocol.Page[protocol.PipelineRun] {
	return page(p, PipelineRun)
}

// Object is a stored object's wire shape.
func Object(o engine.Object) protocol.StoredObject { return protocol.StoredObject(o) }

// TempUpload is a stored upload's wire shape.
func TempUpload(u engine.TempUpload) protocol.TempUpload { return protocol.TempUpload(u) }

// TempUploadInfo is an upload's wire shape.
func TempUploadInfo(u engine.TempUploadInfo) protocol.TempUploadInfo {
	return protocol.TempUploadInfo(u)
}

// TempUploadStats is the upload counts' wire shape.
func TempUploadStats(s engine.TempUploadStats) protocol.TempUploadStats {
	return protocol.TempUploadStats(s)
}

// InputSchemaInfo is a task's input schemas' wire shape: each null when the task has none.
func InputSchemaInfo(i engine.InputSchemaInfo) protocol.InputSchemaInfo {
	out := protocol.InputSchemaInfo{TaskID: i.TaskID, HasSchema: i.Schema != nil || i.JSONSchema != nil,
		Schema: i.Schema, JSONSchema: i.JSONSchema}
	if out.Schema == nil {
		out.Schema = json.RawMessage("null")
	}
	if out.JSONSchema == nil {
		out.JSONSchema = json.RawMessage("null")
	}
	return out
}

// ValidateInputResult is an input validation's wire shape.
func ValidateInputResult(r engine.ValidateInputResult) protocol.ValidateInputResult {
	return protocol.ValidateInputResult(r)
}

// StorageBackends are the storage backends' wire shape.
func StorageBackends(b engine.StorageBackends) protocol.StorageBackends {
	return protocol.StorageBackends{Default: b.Default,
		Backends: list(b.Backends, func(b engine.StorageBackend) protocol.StorageBackend { return protocol.StorageBackend(b) })}
}

// The requests of the API.

// FromEnqueueRequest is the engine's request for the body of an enqueue.
func FromEnqueueRequest(r protocol.EnqueueRequest) engine.EnqueueRequest {
	return engine.EnqueueRequest(r)
}

// FromEnqueueRequests are the engine's requests for the items of a batch enqueue.
func FromEnqueueRequests(r []protocol.EnqueueRequest) []engine.EnqueueRequest {
	return list(r, FromEnqueueRequest)
}

// FromTriggerRequest is the engine's request for the body of a trigger.
func FromTriggerRequest(r protocol.TriggerRequest) engine.TriggerRequest {
	return engine.TriggerRequest(r)
}

// Schedule is a schedule's wire shape.
func Schedule(s engine.Schedule) protocol.Schedule {
	return protocol.Schedule{ID: s.ID, Cron: s.Cron, Timezone: s.Timezone, TaskID: s.TaskID, PipelineID: s.PipelineID, Input: s.Input,
		Overlap: s.Overlap, CatchUp: s.CatchUp, CatchUpLimit: s.CatchUpLimit, Enabled: s.Enabled, NextFireAt: s.NextFireAt,
		NextFireTimes: s.NextFireTimes, LastRunID: s.LastRunID, LastSlotAt: s.LastSlotAt, LastFiredAt: s.LastFiredAt,
		MissedSlots: s.MissedSlots, LastMissedAt: s.LastMissedAt, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		RecentSlots: list(s.RecentSlots, func(f engine.ScheduleFire) protocol.ScheduleSlot { return protocol.ScheduleSlot(f) })}
}

// Schedules is the schedule list's wire shape.
func Schedules(l engine.ScheduleList) protocol.ScheduleList {
	return protocol.ScheduleList{Schedules: list(l.Schedules, Schedule), NextCursor: l.NextCursor}
}

// FromScheduleRequest is the engine's request for a PUT /api/schedules/{id} body.
func FromScheduleRequest(r protocol.ScheduleRequest) engine.ScheduleRequest {
	return engine.ScheduleRequest(r)
}
