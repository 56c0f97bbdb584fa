package token

import (
	"strings"
	"testing"
)

// BenchmarkKeyringSealBackend is the orchestrator's per-dispatch sealing of the storage
// credentials for a run of one service.
func BenchmarkKeyringSealBackend(b *testing.B) {
	r, err := NewKeyring(strings.Repeat("k", 32), "")
	if err != nil {
		b.Fatal(err)
	}
	backend := []byte(`{"id":"local","provider":"local","credentials":{"basePath":"/srv/storage"}}`)
	id := r.CurrentKeyID()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.SealBackend(id, "pdf-processor", "trun_01hzx0000000000000000000", backend); err != nil {
			b.Fatal(err)
		}
	}
}
