package pgcluster

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned by FindBinaries when no PostgreSQL server installation is found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found (initdb, pg_ctl): " +
	"install them with `apt-get install postgresql` (Debian/Ubuntu) or put them on PATH")

// libRoot is where Debian and Ubuntu install each PostgreSQL major version.
const libRoot = "/usr/lib/postgresql"

// serverBinaries are the programs a cluster needs, all in one directory (pg_ctl finds
// postgres next to itself).
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinaries returns the directory that holds initdb, pg_ctl and postgres.
//
// It looks at initdb on PATH first, following symbolic links to the real directory. When
// that initdb is a wrapper script (as Debian's postgresql-common installs), it prefers the
// real binaries under /usr/lib/postgresql/N/bin, with the highest N. Without initdb on
// PATH it falls back to /usr/lib/postgresql/N/bin. The error, when nothing is found, says
// what to install.
func FindBinaries() (string, error) {
	return findBinaries(os.Getenv("PATH"), libRoot)
}

func findBinaries(pathEnv, lib string) (string, error) {
	libDir, libOK := highestVersionDir(lib)
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, "initdb")
		if !isExecutable(p) {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		if isScript(real) {
			if libOK {
				return libDir, nil
			}
			// A wrapper with no real installation to prefer: use it as it is when its
			// siblings are there too.
			if hasAll(d) {
				return absDir(d), nil
			}
			continue
		}
		if dir := filepath.Dir(real); hasAll(dir) {
			return absDir(dir), nil
		}
		if hasAll(d) {
			return absDir(d), nil
		}
	}
	if libOK {
		return libDir, nil
	}
	return "", ErrNoBinaries
}

func absDir(d string) string {
	if a, err := filepath.Abs(d); err == nil {
		return a
	}
	return d
}

// highestVersionDir returns lib/N/bin for the highest version N that holds every server
// binary.
func highestVersionDir(lib string) (string, bool) {
	entries, err := os.ReadDir(lib)
	if err != nil {
		return "", false
	}
	var versions []string
	for _, e := range entries {
		if hasAll(filepath.Join(lib, e.Name(), "bin")) {
			versions = append(versions, e.Name())
		}
	}
	if len(versions) == 0 {
		return "", false
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	return filepath.Join(lib, versions[len(versions)-1], "bin"), true
}

// versionLess compares dotted version numbers numerically ("9.6" < "15"); names that are
// not numbers sort before every number.
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, errA := strconv.Atoi(pa[i])
		nb, errB := strconv.Atoi(pb[i])
		switch {
		case errA != nil && errB != nil:
			if pa[i] != pb[i] {
				return pa[i] < pb[i]
			}
		case errA != nil:
			return true
		case errB != nil:
			return false
		case na != nb:
			return na < nb
		}
	}
	return len(pa) < len(pb)
}

func hasAll(dir string) bool {
	for _, name := range serverBinaries {
		if !isExecutable(filepath.Join(dir, name)) {
			return false
		}
	}
	return true
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// isScript reports whether p starts with "#!", as wrapper scripts do.
func isScript(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [2]byte
	n, _ := f.Read(head[:])
	return n == 2 && string(head[:]) == "#!"
}
