package artifact

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sources returns the files a filter build is made from, relative to the module root root and sorted: every
// .go file under filter/ that is not a test, then go.mod and go.sum. It is the Makefile's FILTER_SRC, the
// prerequisites of build/filter.wasm and build/filter-go.wasm (TestSourcesMatchMakefile keeps the two equal).
func Sources(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(filepath.Join(root, "filter"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// find(1) in FILTER_SRC lists regular files and symlinks alike, so everything not a directory counts.
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".go") || strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("filter sources: %w", err)
	}
	slices.Sort(files)
	return append(files, "go.mod", "go.sum"), nil
}

// StaleError reports a filter build older than one of its sources.
type StaleError struct {
	Build     Build
	BuiltAt   time.Time // modification time of Build.Path
	Source    string    // the newest source, relative to the module root
	ChangedAt time.Time // its modification time
}

// Error names the build, the newer source and the command that rebuilds it.
func (e *StaleError) Error() string {
	const layout = "2006-01-02 15:04:05.000 MST"
	return fmt.Sprintf("%s filter build %s (built %s) is older than its source %s (modified %s, %s later)",
		e.Build.Name, e.Build.Path, e.BuiltAt.UTC().Format(layout), e.Source, e.ChangedAt.UTC().Format(layout),
		e.ChangedAt.Sub(e.BuiltAt).Round(time.Millisecond))
}

// CheckFresh returns a *StaleError for the first build older than the newest of its sources (see Sources)
// under the module root root, and nil when every build is at least as new as all of them.
//
// It compares modification times the way make does: a build is stale only when a source is strictly newer,
// so `go test` refuses a build exactly when `make filter` would rebuild it, and accepts one that make has
// just built. In a fresh clone every source has its checkout time and `make test` builds the filter after
// the checkout, so a CI run never sees a stale build; a cached build restored with an older time than the
// checkout is refused, and make rebuilds it too. Sources are not hashed: touching a file without changing it
// (git checkout back and forth, git stash) makes the build stale, as it does for make.
func CheckFresh(root string, builds []Build) error {
	files, err := Sources(root)
	if err != nil {
		return err
	}
	var newest string
	var newestAt time.Time
	for _, f := range files {
		info, err := os.Stat(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return fmt.Errorf("filter source: %w", err)
		}
		if newest == "" || info.ModTime().After(newestAt) {
			newest, newestAt = f, info.ModTime()
		}
	}
	for _, b := range builds {
		info, err := os.Stat(b.Path)
		if err != nil {
			return fmt.Errorf("%s filter build: %w", b.Name, err)
		}
		if newestAt.After(info.ModTime()) {
			return &StaleError{Build: b, BuiltAt: info.ModTime(), Source: newest, ChangedAt: newestAt}
		}
	}
	return nil
}
