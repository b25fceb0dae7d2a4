package api

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var webFiles embed.FS

// webHandler serves the search page (web/): a query box, trace and span result tables under a plot of the same
// answer (start against duration, a histogram over time), a trace view with a waterfall and span details, and
// a service graph of the traces a query matches (GET /api/v1/dependencies), all drawn in the browser from
// /api/v1.
// webPaths are the URL paths of the page's files ("/" for index.html).
func webPaths() map[string]bool {
	paths := map[string]bool{"/": true}
	entries, err := webFiles.ReadDir("web")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	for _, e := range entries {
		paths["/"+e.Name()] = true
	}
	return paths
}

func webHandler() http.Handler {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return http.FileServerFS(sub)
}
