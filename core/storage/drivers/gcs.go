//go:build !pipeweave_no_gcs

package drivers

import _ "github.com/pipeweave/pipeweave/core/storage/gcs" // provider gcs
