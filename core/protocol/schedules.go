package protocol

import (
	"encoding/json"
	"time"
)

// ScheduleRequest is the body of PUT /api/schedules/{id}: what fires (taskId or pipelineId,
// exactly one), when (cron in timezone), with which input, and the overlap and catch-up
// policies (docs/api.md, Schedules).
type ScheduleRequest struct {
	// Cron is a cron expression: five fields, six with seconds first, or a descriptor such as
	// @hourly or @every 90s.
	Cron string `json:"cron"`
	// Timezone is an IANA time zone name (default UTC).
	Timezone   string          `json:"timezone,omitempty"`
	TaskID     string          `json:"taskId,omitempty"`
	PipelineID string          `json:"pipelineId,omitempty"`
	Input      json.RawMessage `json:"input,omitempty"`
	// Overlap is allow (default), skip or cancel-previous.
	Overlap string `json:"overlap,omitempty"`
	// CatchUp is none (default), latest or all; CatchUpLimit bounds all (default 100).
	CatchUp      string `json:"catchUp,omitempty"`
	CatchUpLimit *int   `json:"catchUpLimit,omitempty"`
	// Enabled defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
}

// Schedule is a schedule and its state (GET /api/schedules/{id}, and the PUT's answer).
type Schedule struct {
	ID           string          `json:"id"`
	Cron         string          `json:"cron"`
	Timezone     string          `json:"timezone"`
	TaskID       string          `json:"taskId,omitempty"`
	PipelineID   string          `json:"pipelineId,omitempty"`
	Input        json.RawMessage `json:"input"`
	Overlap      string          `json:"overlap"`
	CatchUp      string          `json:"catchUp"`
	CatchUpLimit int             `json:"catchUpLimit"`
	Enabled      bool            `json:"enabled"`
	// NextFireAt is the next slot to handle (null while disabled); NextFireTimes are it and the
	// slots after it, up to five.
	NextFireAt    *time.Time  `json:"nextFireAt"`
	NextFireTimes []time.Time `json:"nextFireTimes"`
	// LastRunID is the run the last fired slot made, LastSlotAt that slot, LastFiredAt when.
	LastRunID   string     `json:"lastRunId,omitempty"`
	LastSlotAt  *time.Time `json:"lastSlotAt,omitempty"`
	LastFiredAt *time.Time `json:"lastFiredAt,omitempty"`
	// MissedSlots counts due slots the catch-up policy passed over; LastMissedAt the latest.
	MissedSlots  int64      `json:"missedSlots"`
	LastMissedAt *time.Time `json:"lastMissedAt,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
	// RecentSlots are the latest handled slots, newest first (GET of one schedule only).
	RecentSlots []ScheduleSlot `json:"recentSlots,omitempty"`
}

// ScheduleSlot is one handled slot: fired (runId names the run), skipped (overlap), or failed
// (error says why).
type ScheduleSlot struct {
	SlotAt  time.Time `json:"slotAt"`
	Outcome string    `json:"outcome"`
	RunID   string    `json:"runId,omitempty"`
	Error   string    `json:"error,omitempty"`
	FiredAt time.Time `json:"firedAt"`
}

// ScheduleList is the answer of GET /api/schedules: a page of schedules in id order, and the
// cursor of the next page when there is one.
type ScheduleList struct {
	Schedules  []Schedule `json:"schedules"`
	NextCursor string     `json:"nextCursor,omitempty"`
}
