// A small chi REST app, written as for net/http. Its only sluice line is
// sluice.ListenAndServe (plain: http.ListenAndServe): behind the gateway,
// which sets SLUICE_SOCKET, it serves through the gateway; started on its
// own it listens on $ADDR (default :8080) like any net/http program.
//
//	(cd examples/go && go build -o /tmp/chi-app ./chi)
//	build/server/sluice --listen 127.0.0.1:8080 --workers 2 -- /tmp/chi-app
//	ADDR=127.0.0.1:8081 /tmp/chi-app                       # the same app on its own
//
//	curl localhost:8080/notes
//	curl -d '{"title":"buy milk"}' localhost:8080/notes
//	curl localhost:8080/notes/1
//	curl -X PATCH -d '{"done":true}' localhost:8080/notes/1
//	curl -X DELETE localhost:8080/notes/1
//
// The notes live in the process: each worker has its own list (a real app
// keeps them in a database shared by all workers).
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	sluice "sluice.dev/go"
)

type note struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Done  bool   `json:"done"`
}

type store struct {
	mu    sync.Mutex
	next  int
	notes map[int]*note
}

func newStore() *store {
	s := &store{next: 1, notes: map[int]*note{}}
	s.add("read the sluice README")
	s.add("try the chi example")
	return s
}

func (s *store) add(title string) note {
	n := &note{ID: s.next, Title: title}
	s.notes[n.ID] = n
	s.next++
	return *n
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// noteID reads the {id} URL parameter.
func noteID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(chi.URLParam(r, "id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "id must be a number")
		return 0, false
	}
	return id, true
}

func (s *store) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(middleware.Logger)
	r.Use(middleware.Recoverer)
	r.Use(func(next http.Handler) http.Handler { // the request id, for the client's logs
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Request-Id", middleware.GetReqID(r.Context()))
			next.ServeHTTP(w, r)
		})
	})

	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("notes API: GET/POST /notes, GET/PATCH/DELETE /notes/{id}, GET /hello/{name}\n"))
	})
	r.Get("/hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"hello": chi.URLParam(r, "name")})
	})
	r.Get("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("something went wrong") // Recoverer answers 500
	})

	r.Route("/notes", func(r chi.Router) {
		r.Get("/", func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			list := make([]note, 0, len(s.notes))
			for _, n := range s.notes {
				if q := r.URL.Query().Get("q"); q == "" || strings.Contains(n.Title, q) {
					list = append(list, *n)
				}
			}
			s.mu.Unlock()
			sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
			writeJSON(w, http.StatusOK, list)
		})
		r.Post("/", func(w http.ResponseWriter, r *http.Request) {
			var in struct {
				Title string `json:"title"`
			}
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
				writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
				return
			}
			if in.Title == "" {
				writeError(w, http.StatusUnprocessableEntity, "title is required")
				return
			}
			s.mu.Lock()
			n := s.add(in.Title)
			s.mu.Unlock()
			w.Header().Set("Location", "/notes/"+strconv.Itoa(n.ID))
			writeJSON(w, http.StatusCreated, n)
		})
		r.Route("/{id}", func(r chi.Router) {
			r.Get("/", func(w http.ResponseWriter, r *http.Request) {
				id, ok := noteID(w, r)
				if !ok {
					return
				}
				s.mu.Lock()
				n, found := s.notes[id]
				var out note
				if found {
					out = *n
				}
				s.mu.Unlock()
				if !found {
					writeError(w, http.StatusNotFound, "no note "+strconv.Itoa(id))
					return
				}
				writeJSON(w, http.StatusOK, out)
			})
			r.Patch("/", func(w http.ResponseWriter, r *http.Request) {
				id, ok := noteID(w, r)
				if !ok {
					return
				}
				var in struct {
					Title *string `json:"title"`
					Done  *bool   `json:"done"`
				}
				if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
					writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
					return
				}
				s.mu.Lock()
				n, found := s.notes[id]
				var out note
				if found {
					if in.Title != nil {
						n.Title = *in.Title
					}
					if in.Done != nil {
						n.Done = *in.Done
					}
					out = *n
				}
				s.mu.Unlock()
				if !found {
					writeError(w, http.StatusNotFound, "no note "+strconv.Itoa(id))
					return
				}
				writeJSON(w, http.StatusOK, out)
			})
			r.Delete("/", func(w http.ResponseWriter, r *http.Request) {
				id, ok := noteID(w, r)
				if !ok {
					return
				}
				s.mu.Lock()
				_, found := s.notes[id]
				delete(s.notes, id)
				s.mu.Unlock()
				if !found {
					writeError(w, http.StatusNotFound, "no note "+strconv.Itoa(id))
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
		})
	})

	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no route for "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, r.Method+" not allowed on "+r.URL.Path)
	})
	return r
}

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	r := newStore().routes()
	log.Fatal(sluice.ListenAndServe(addr, r)) // plain: log.Fatal(http.ListenAndServe(addr, r))
}
