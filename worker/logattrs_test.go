package worker

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWithAttrsLogsAsWith checks that an attempt's lazily enriched logger writes exactly what
// slog.Logger.With writes, through the standard text and JSON handlers: plain records, records
// with attributes of their own, loggers derived with With and WithGroup, a base logger with a
// group already open, and levels the handler drops.
func TestWithAttrsLogsAsWith(t *testing.T) {
	t.Parallel()
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: noTime})
		},
		"json": func(b *bytes.Buffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: noTime})
		},
	}
	attrs := []slog.Attr{slog.String("run", "trun_1"), slog.String("task", "t"), slog.Int("attempt", 2)}
	scenarios := map[string]func(*slog.Logger){
		"plain":      func(l *slog.Logger) { l.Info("hello") },
		"own attrs":  func(l *slog.Logger) { l.Warn("hello", "err", "boom", "n", 3) },
		"dropped":    func(l *slog.Logger) { l.Debug("not written") },
		"with":       func(l *slog.Logger) { l.With("dir", "/tmp/x").Info("kept", "k", "v") },
		"with group": func(l *slog.Logger) { l.WithGroup("g").Info("grouped", "k", "v") },
	}
	for hname, mk := range handlers {
		for sname, log := range scenarios {
			for _, base := range []string{"bare", "in a group"} {
				var want, got bytes.Buffer
				wantBase, gotBase := slog.New(mk(&want)), slog.New(mk(&got))
				if base == "in a group" {
					wantBase, gotBase = wantBase.WithGroup("svc"), gotBase.WithGroup("svc")
				}
				log(wantBase.With(anys(attrs)...))
				log(withAttrs(gotBase, attrs...))
				require.Equal(t, want.String(), got.String(), "%s handler, %s, %s", hname, sname, base)
			}
		}
	}
	require.False(t, withAttrs(slog.New(handlers["text"](&bytes.Buffer{})), attrs...).Enabled(context.Background(), slog.LevelDebug))
}

func anys(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}
