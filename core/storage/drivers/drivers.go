// Package drivers links every storage driver this build includes, for the
// binaries that open whatever STORAGE_BACKENDS configures: the CLI, the
// functions that read or write objects (api, process, dlq-purge) and the Cloud
// Functions entry point. Import it for its side effect:
//
//	import _ "github.com/pipeweave/pipeweave/core/storage/drivers"
//
// By default that is all four providers. A deployment that uses fewer builds
// without the others with build tags, one per driver left out:
//
//	pipeweave_no_local  pipeweave_no_s3  pipeweave_no_gcs  pipeweave_no_minio
//
// (the Makefile's STORAGE_DRIVERS variable sets them). Opening a backend of a
// provider left out fails with an error wrapping storage.ErrUnsupportedProvider.
package drivers
