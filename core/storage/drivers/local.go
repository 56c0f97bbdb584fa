//go:build !pipeweave_no_local

package drivers

import _ "github.com/pipeweave/pipeweave/core/storage/local" // provider local
