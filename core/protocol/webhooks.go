package protocol

import "time"

// The webhook event types (docs/webhooks.md).
const (
	EventPipelineRunCompleted = "pipeline_run.completed"
	EventPipelineRunFailed    = "pipeline_run.failed"
	EventPipelineRunPartial   = "pipeline_run.partial"
	EventPipelineRunCancelled = "pipeline_run.cancelled"
	EventTaskRunCompleted     = "task_run.completed"
	EventTaskRunFailed        = "task_run.failed"
	EventTaskRunCancelled     = "task_run.cancelled"
	EventDLQAdded             = "dlq.added"
	EventScheduleMissed       = "schedule.missed"
)

// WebhookEvents are every event type a webhook may want.
var WebhookEvents = []string{
	EventPipelineRunCompleted, EventPipelineRunFailed, EventPipelineRunPartial, EventPipelineRunCancelled,
	EventTaskRunCompleted, EventTaskRunFailed, EventTaskRunCancelled, EventDLQAdded, EventScheduleMissed,
}

// WebhookPut is the body of PUT /api/webhooks/{id}.
type WebhookPut struct {
	// URL receives the deliveries (POST); http or https, an address the SSRF guard allows.
	URL string `json:"url"`
	// Events are the event types wanted (WebhookEvents).
	Events []string `json:"events"`
	// Secret is the signing secret, whsec_ and the base64 of 24 to 64 bytes. Omitted: a new
	// webhook gets a generated one (answered once), an existing one keeps its own.
	Secret *string `json:"secret,omitempty"`
	// Enabled (default true): a disabled webhook gets no new deliveries.
	Enabled *bool `json:"enabled,omitempty"`
}

// Webhook is a webhook as the API shows it: never its secret, except Secret in the answer to
// the PUT that generated it.
type Webhook struct {
	ID      string   `json:"id"`
	URL     string   `json:"url"`
	Events  []string `json:"events"`
	Enabled bool     `json:"enabled"`
	// SecretSet is always true: every webhook has a secret.
	SecretSet bool `json:"secretSet"`
	// SecretPrefix is the secret's first characters (whsec_ and 4 more), to tell secrets apart.
	SecretPrefix string `json:"secretPrefix"`
	// Secret is the generated secret, only in the answer of the PUT that generated it.
	Secret    string    `json:"secret,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// WebhookList is the answer of GET /api/webhooks.
type WebhookList struct {
	Items []Webhook `json:"items"`
}

// The states of a webhook delivery.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryDead      = "dead"
)

// WebhookDelivery is one delivery of the log (GET /api/webhooks/{id}/deliveries).
type WebhookDelivery struct {
	// ID is the webhook-id header, the same on every attempt.
	ID        string `json:"id"`
	WebhookID string `json:"webhookId"`
	Event     string `json:"event"`
	// Status is pending, delivered or dead.
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	// NextAttemptAt is when a pending delivery is sent next.
	NextAttemptAt  *time.Time `json:"nextAttemptAt,omitempty"`
	LastAttemptAt  *time.Time `json:"lastAttemptAt,omitempty"`
	LastStatusCode *int       `json:"lastStatusCode,omitempty"`
	LastError      string     `json:"lastError,omitempty"`
	CreatedAt      time.Time  `json:"createdAt"`
	// FinishedAt is when it was delivered or went dead.
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// WebhookDeliveryPage is one page of a webhook's delivery log, newest first.
type WebhookDeliveryPage struct {
	Items      []WebhookDelivery `json:"items"`
	NextCursor string            `json:"nextCursor,omitempty"`
}
