// Package version reports what build of modelwatch is running. Version and
// Revision are set at link time (-ldflags "-X ...") by release builds; when
// they are not, the revision comes from the Go toolchain's VCS stamp.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set at link time: -X github.com/modelwatch/modelwatch/internal/version.Version=...
var (
	Version  = "dev"
	Revision = ""
)

// Info is the build information of the running binary.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"goversion"`
}

// Get returns the build information of the running binary.
func Get() Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version()}
	if i.Revision == "" {
		i.Revision = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					i.Revision = s.Value
				}
			}
		}
	}
	return i
}
