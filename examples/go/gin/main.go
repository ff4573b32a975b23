// A small gin app, written as for net/http. Its only sluice line is
// sluice.ListenAndServe (plain: http.ListenAndServe, or r.Run(addr)): behind
// the gateway, which sets SLUICE_SOCKET, it serves through the gateway;
// started on its own it listens on $ADDR (default :8080).
//
//	(cd examples/go && go build -o /tmp/gin-app ./gin)
//	GIN_MODE=release build/server/sluice --listen 127.0.0.1:8080 --workers 2 -- /tmp/gin-app
//	GIN_MODE=release ADDR=127.0.0.1:8081 /tmp/gin-app      # the same app on its own
//
//	curl localhost:8080/api/v1/books
//	curl -d '{"title":"Dune","author":"Frank Herbert","year":1965}' localhost:8080/api/v1/books
//	curl localhost:8080/api/v1/books/1
//	curl localhost:8080/api/v1/authors/Frank%20Herbert/books
//
// GIN_MODE=release (gin reads it itself) silences gin's debug output, which
// would otherwise go to the gateway's log. The books live in the process:
// each worker has its own list.
package main

import (
	"log"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"

	"github.com/gin-gonic/gin"

	sluice "sluice.dev/go"
)

type book struct {
	ID     int    `json:"id"`
	Title  string `json:"title" binding:"required"`
	Author string `json:"author" binding:"required"`
	Year   int    `json:"year" binding:"omitempty,gte=1450,lte=2100"`
}

type library struct {
	mu    sync.Mutex
	next  int
	books map[int]book
}

func newLibrary() *library {
	l := &library{next: 1, books: map[int]book{}}
	l.add(book{Title: "The C Programming Language", Author: "Kernighan and Ritchie", Year: 1978})
	l.add(book{Title: "The Go Programming Language", Author: "Donovan and Kernighan", Year: 2015})
	return l
}

func (l *library) add(b book) book {
	b.ID = l.next
	l.books[b.ID] = b
	l.next++
	return b
}

func (l *library) sorted(keep func(book) bool) []book {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []book{}
	for _, b := range l.books {
		if keep(b) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// bookID reads the :id parameter.
func bookID(c *gin.Context) (int, bool) {
	id, err := strconv.Atoi(c.Param("id"))
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": "id must be a number"})
		return 0, false
	}
	return id, true
}

func (l *library) routes() *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())

	r.GET("/", func(c *gin.Context) {
		c.String(http.StatusOK, "books API under /api/v1: GET/POST /books, GET/PUT/DELETE /books/:id, "+
			"GET /authors/:name/books\n")
	})
	r.GET("/panic", func(c *gin.Context) {
		panic("something went wrong") // gin.Recovery answers 500
	})

	api := r.Group("/api/v1")
	api.GET("/books", func(c *gin.Context) {
		c.JSON(http.StatusOK, l.sorted(func(book) bool { return true }))
	})
	api.POST("/books", func(c *gin.Context) {
		var b book
		if err := c.ShouldBindJSON(&b); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		l.mu.Lock()
		b = l.add(b)
		l.mu.Unlock()
		c.Header("Location", "/api/v1/books/"+strconv.Itoa(b.ID))
		c.JSON(http.StatusCreated, b)
	})
	api.GET("/books/:id", func(c *gin.Context) {
		id, ok := bookID(c)
		if !ok {
			return
		}
		l.mu.Lock()
		b, found := l.books[id]
		l.mu.Unlock()
		if !found {
			c.JSON(http.StatusNotFound, gin.H{"error": "no book " + c.Param("id")})
			return
		}
		c.JSON(http.StatusOK, b)
	})
	api.PUT("/books/:id", func(c *gin.Context) {
		id, ok := bookID(c)
		if !ok {
			return
		}
		var b book
		if err := c.ShouldBindJSON(&b); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		b.ID = id
		l.mu.Lock()
		_, found := l.books[id]
		if found {
			l.books[id] = b
		}
		l.mu.Unlock()
		if !found {
			c.JSON(http.StatusNotFound, gin.H{"error": "no book " + c.Param("id")})
			return
		}
		c.JSON(http.StatusOK, b)
	})
	api.DELETE("/books/:id", func(c *gin.Context) {
		id, ok := bookID(c)
		if !ok {
			return
		}
		l.mu.Lock()
		_, found := l.books[id]
		delete(l.books, id)
		l.mu.Unlock()
		if !found {
			c.JSON(http.StatusNotFound, gin.H{"error": "no book " + c.Param("id")})
			return
		}
		c.Status(http.StatusNoContent)
	})
	api.GET("/authors/:name/books", func(c *gin.Context) {
		name := c.Param("name")
		c.JSON(http.StatusOK, l.sorted(func(b book) bool { return b.Author == name }))
	})

	r.NoRoute(func(c *gin.Context) {
		c.JSON(http.StatusNotFound, gin.H{"error": "no route for " + c.Request.URL.Path})
	})
	return r
}

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	r := newLibrary().routes()
	log.Fatal(sluice.ListenAndServe(addr, r)) // plain: log.Fatal(http.ListenAndServe(addr, r))
}
