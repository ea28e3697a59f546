package tracing

import "os"

// getenv is the process environment, which t.Setenv changes and the SDK
// and exporters read.
var getenv = os.Getenv
