//go:build pins

// Package pins holds the building blocks DESIGN.md pins before arcmill's
// code imports them, so `go mod tidy` keeps their versions in go.mod. It is
// never built; delete an import here once real code imports the module.
package pins

import (
	_ "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	_ "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)
