//go:build !pipeweave_no_minio

package drivers

import _ "github.com/pipeweave/pipeweave/core/storage/minio" // provider minio
