package protocol

import "time"

// The answers of the temporary-upload routes (docs/api.md#temporary-uploads), in upstream
// PipeWeave's shapes.

// TempUpload is the answer to a stored upload (upstream's POST /api/upload/temp shape).
type TempUpload struct {
	UploadID    string    `json:"uploadId"`
	StoragePath string    `json:"storagePath"`
	Filename    string    `json:"filename"`
	Size        int64     `json:"size"`
	MimeType    string    `json:"mimeType"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// TempUploadInfo is one upload as GET /api/upload/temp/{id} shows it (upstream's shape).
type TempUploadInfo struct {
	UploadID         string     `json:"uploadId"`
	StoragePath      string     `json:"storagePath"`
	StorageBackendID string     `json:"storageBackendId"`
	UploadedAt       time.Time  `json:"uploadedAt"`
	ExpiresAt        time.Time  `json:"expiresAt"`
	ClaimedByRunID   *string    `json:"claimedByRunId"`
	DeletedAt        *time.Time `json:"deletedAt"`
	Filename         string     `json:"filename"`
	MimeType         string     `json:"mimeType"`
	Size             int64      `json:"size"`
	// Expired: past its expiry and not claimed (a claimed upload no longer expires).
	Expired bool `json:"expired"`
	Claimed bool `json:"claimed"`
	Deleted bool `json:"deleted"`
}

// TempUploadStats counts the uploads (GET /api/upload/stats). Expired counts the expired,
// unclaimed uploads that the next cleanup deletes.
type TempUploadStats struct {
	Total   int64 `json:"total"`
	Expired int64 `json:"expired"`
	Claimed int64 `json:"claimed"`
	Deleted int64 `json:"deleted"`
}
