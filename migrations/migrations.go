// Package migrations embeds the numbered SQL files that build the PipeWeave schema.
//
// Files are named NNN_description.sql and applied in numeric order by package
// github.com/pipeweave/pipeweave/core/migrate; a file, once released, is never edited.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
