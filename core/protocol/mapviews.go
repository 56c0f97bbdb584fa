package protocol

import "time"

// Map node views (issue 15, item 4; docs/api.md, Map nodes): how a pipeline run's map nodes
// and their items are shown, and how a dry run describes a node that is not an ordinary one.

// ItemCountUnknown is a dry run's itemCount for a map node: how many items it will run is known
// only once the task it maps over has completed.
const ItemCountUnknown = "unknown"

// MapItemStates are the states a map node's items are counted in (MapNodeState.Counts always
// lists each of them).
var MapItemStates = []TaskRunStatus{StatusPending, StatusDispatching, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled}

// PlanNode describes a node of a dry run's step that is not an ordinary task run.
type PlanNode struct {
	// Type is "map": the node runs its task once per element of an array in Map.Over's output;
	// "pipeline": a child run of Pipeline runs in the node's place (a sub-pipeline node); or
	// "spawn": the node's run may start task runs from its success callback and waits for them.
	Type string `json:"type"`
	// Map is a map node's declaration, maxItems filled in.
	Map *MapConfig `json:"map,omitempty"`
	// Spawn is a spawn node's declaration, maxItems filled in.
	Spawn *SpawnConfig `json:"spawn,omitempty"`
	// Pipeline is the pipeline a sub-pipeline node runs.
	Pipeline string `json:"pipeline,omitempty"`
	// ItemCount is ItemCountUnknown for a map or spawn node: its items are known only at run
	// time.
	ItemCount string `json:"itemCount,omitempty"`
	// Plan is a sub-pipeline node's child pipeline's own dry run, as it is now (its plan, its
	// sub-pipeline nodes' plans within, its warnings and errors); absent when PlanOmitted says
	// why.
	Plan *DryRun `json:"plan,omitempty"`
	// PlanOmitted says why a sub-pipeline node has no Plan: the pipeline does not exist, the
	// chain of sub-pipelines is too deep, or the dry run already shows MaxDryRunChildPlans plans.
	PlanOmitted string `json:"planOmitted,omitempty"`
	// ErrorCode is the error a run would fail the sub-pipeline node with, as the pipeline stands
	// now (SUB_PIPELINE_INVALID, SUB_PIPELINE_UNKNOWN, SUB_PIPELINE_TOO_DEEP,
	// SUB_PIPELINE_CYCLE); absent when its child can start.
	ErrorCode string `json:"errorCode,omitempty"`
}

// MaxDryRunChildPlans bounds how many child plans (PlanNode.Plan) one dry run shows, at every
// depth together; a sub-pipeline node past it has PlanOmitted instead, and the dry run of its
// pipeline shows that plan.
const MaxDryRunChildPlans = 100

// MapNodeState is a map node of a pipeline run: its declaration, its own row (the map row,
// which never goes to a worker) and its items counted by state.
type MapNodeState struct {
	TaskID string `json:"taskId"`
	// MapRunID is the id of the map row; Status its state (waiting until its items resolved,
	// then completed or failed; skipped or cancelled like any node).
	MapRunID string        `json:"mapRunId"`
	Status   TaskRunStatus `json:"status"`
	// Map is the node's declaration in the run's snapshot.
	Map MapConfig `json:"map"`
	// ItemsTotal is how many items the node has (null until Map.Over completed and the items
	// were made).
	ItemsTotal *int `json:"itemsTotal"`
	// Counts counts the items by state: every state of MapItemStates, 0 included.
	Counts map[TaskRunStatus]int `json:"counts"`
}

// MapItem is one item of a map node, as GET /api/runs/{id}/maps/{taskId}/items lists it; the
// whole task run is GET /api/task-runs/{runId}.
type MapItem struct {
	ItemIndex   int           `json:"itemIndex"`
	RunID       string        `json:"runId"`
	Status      TaskRunStatus `json:"status"`
	Attempt     int           `json:"attempt"`
	Error       *string       `json:"error,omitempty"`
	ErrorCode   *string       `json:"errorCode,omitempty"`
	InputPath   string        `json:"inputPath"`
	OutputPath  *string       `json:"outputPath,omitempty"`
	StartedAt   *time.Time    `json:"startedAt,omitempty"`
	CompletedAt *time.Time    `json:"completedAt,omitempty"`
	UpdatedAt   time.Time     `json:"updatedAt"`
}
