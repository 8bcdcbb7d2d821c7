// Package api serves the key-value store over HTTP as JSON.
package api

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"example.com/sample/internal/kv"
)

// Handler serves GET/PUT /kv/NAME and GET /recent.
func Handler(store *kv.Store) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/kv/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/kv/")
		if name == "" {
			http.Error(w, "missing name", http.StatusBadRequest)
			return
		}
		switch r.Method {
		case http.MethodPut:
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			writeJSON(w, http.StatusCreated, map[string]string{"digest": store.Put(name, body)})
		case http.MethodGet:
			v, err := store.Get(name)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(v)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
	mux.HandleFunc("/recent", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, store.Recent())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
