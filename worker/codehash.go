package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
)

// defaultCodeHash is the code hash of tasks that set none: computed once per process.
var defaultCodeHash = sync.OnceValue(func() string { return codeHashOf(readBuildInfo()) })

// readBuildInfo returns the binary's build information, or nil.
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// codeHashOf hashes what identifies the code of this binary: the main module (path, version,
// sum), its dependencies, the Go version and the VCS revision. When that does not pin the code
// down (no build information, no VCS revision, or a modified working tree: main's version is
// then "(devel)" whatever the code), the executable's content is hashed too, so that a rebuilt
// binary with different code gets a different hash while an identical rebuild keeps it. The
// result is the first 16 hex characters of the SHA-256.
func codeHashOf(bi *debug.BuildInfo) string {
	h := sha256.New()
	pinned := false
	if bi == nil {
		fmt.Fprintf(h, "go\x00%s\n", runtime.Version())
	} else {
		fmt.Fprintf(h, "go\x00%s\n", bi.GoVersion)
		fmt.Fprintf(h, "main\x00%s\x00%s\x00%s\n", bi.Main.Path, bi.Main.Version, bi.Main.Sum)
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			fmt.Fprintf(h, "dep\x00%s\x00%s\x00%s\n", d.Path, d.Version, d.Sum)
		}
		revision, modified := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		fmt.Fprintf(h, "vcs\x00%s\x00%s\n", revision, modified)
		pinned = revision != "" && modified != "true"
	}
	if !pinned {
		hashExecutable(h)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// hashExecutable adds the running executable's content to h, if it can be read.
func hashExecutable(h hash.Hash) {
	path, err := os.Executable()
	if err != nil {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if _, err := io.Copy(h, f); err != nil {
		fmt.Fprintf(h, "unreadable\x00%v\n", err)
	}
}
