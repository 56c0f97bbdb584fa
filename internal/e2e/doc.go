// Package e2e holds the end-to-end tests of PipeWeave: a real orchestrator on
// a fresh database, served over HTTP, whose default storage backend is each of
// the supported providers in turn (a local directory, AWS S3 and MinIO on an
// S3-compatible fake, Google Cloud Storage on an emulator), and the example
// PDF worker, which reads and writes that storage directly with the
// credentials sealed in its run tokens. The package has only tests.
package e2e
