//go:build !pipeweave_no_s3

package drivers

import _ "github.com/pipeweave/pipeweave/core/storage/s3" // provider aws-s3
