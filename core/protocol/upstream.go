package protocol

import "time"

// Answers of the routes upstream's orchestrator has (packages/orchestrator/src/routes):
// GET /api/info, GET /api/services/{id}, GET /api/storage/backends.

// Info is the answer of GET /api/info.
type Info struct {
	Version        string `json:"version"`
	Mode           string `json:"mode"`
	MaxConcurrency int    `json:"maxConcurrency"`
	PollIntervalMs int64  `json:"pollIntervalMs"`
	// StorageBackends are the ids of the configured storage backends.
	StorageBackends       []string `json:"storageBackends"`
	DefaultStorageBackend string   `json:"defaultStorageBackend"`
	// Uptime is how long this instance has served, in seconds.
	Uptime    float64   `json:"uptime"`
	Timestamp time.Time `json:"timestamp"`
}

// ServiceDetail is the answer of GET /api/services/{id}: a registered service with its task
// definitions (orphaned ones carry removedInVersion).
type ServiceDetail struct {
	ID           string    `json:"id"`
	Version      string    `json:"version"`
	BaseURL      string    `json:"baseUrl"`
	RegisteredAt time.Time `json:"registeredAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	Tasks        []Task    `json:"tasks"`
}

// StorageBackend is a configured storage backend as GET /api/storage/backends shows it: never
// its credentials.
type StorageBackend struct {
	ID        string `json:"id"`
	Provider  string `json:"provider"`
	Endpoint  string `json:"endpoint,omitempty"`
	Bucket    string `json:"bucket,omitempty"`
	Region    string `json:"region,omitempty"`
	IsDefault bool   `json:"isDefault"`
}

// StorageBackends is the answer of GET /api/storage/backends.
type StorageBackends struct {
	Backends []StorageBackend `json:"backends"`
	Default  string           `json:"default"`
}
