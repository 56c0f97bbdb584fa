package engine

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"
)

// The engine's SQL lives in sql/*.sql, one statement per "-- name: x" section.
//
//go:embed sql/*.sql
var sqlFiles embed.FS

var queries = loadQueries()

func loadQueries() map[string]string {
	out := map[string]string{}
	err := fs.WalkDir(sqlFiles, "sql", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := sqlFiles.ReadFile(path)
		if err != nil {
			return err
		}
		var name string
		var buf strings.Builder
		flush := func() {
			if name != "" {
				out[name] = strings.TrimSpace(buf.String())
			}
			buf.Reset()
		}
		for _, line := range strings.Split(string(body), "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
				flush()
				name = strings.TrimSpace(rest)
				if _, dup := out[name]; dup {
					return fmt.Errorf("query %q defined twice", name)
				}
				continue
			}
			buf.WriteString(line)
			buf.WriteByte('\n')
		}
		flush()
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("load engine SQL: %v", err))
	}
	return out
}

// q returns the named statement; a missing name is a programming error.
func q(name string) string {
	s, ok := queries[name]
	if !ok {
		panic("engine: no SQL named " + name)
	}
	return s
}
