// WebSockets with the sluice Go library: an echo and a chat room.
//
// The gateway terminates RFC 6455 (handshake checks, masking, fragments,
// UTF-8, the client's pings, the closing handshake) over HTTP/1.1 or
// HTTP/2; a handler accepts with sluice.Accept and exchanges whole messages.
//
//	(cd examples/go && go build -o /tmp/websocket ./websocket)
//	build/server/sluice --listen 127.0.0.1:8080 --workers 1 -- /tmp/websocket
//
//	build/server/load/sluice-load -c 10 -d 3 ws://127.0.0.1:8080/echo   # echoes, checked
//	python3 -m websockets ws://127.0.0.1:8080/chat                       # type lines; open two
//
// Routes:
//
//	/echo  every message back, same type (subprotocol "echo" if offered)
//	/chat  every text message to every member of the room, prefixed "N: "
//	       (N is the member's number); "/quit" closes with 4000
//	/      a page saying where the WebSockets are (a refusal for a handshake)
//
// A chat room lives in one worker process: run it with --workers 1, or the
// members that land on other workers are in other rooms.
package main

import (
	"fmt"
	"log"
	"net/http"
	"sync"

	sluice "sluice.dev/go"
)

func echo(w http.ResponseWriter, r *http.Request) {
	ws, err := sluice.Accept(w, r, &sluice.AcceptOptions{Subprotocols: []string{"echo"}})
	if err != nil {
		return // not a WebSocket handshake: Accept answered 426
	}
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			return // the client closed (a *sluice.CloseError) or went away
		}
		if err := ws.WriteMessage(typ, data); err != nil {
			return
		}
	}
}

// room is the chat room: its members' outgoing queues.
type room struct {
	mu      sync.Mutex
	next    int
	members map[int]chan []byte
}

func (rm *room) join() (int, chan []byte) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.next++
	ch := make(chan []byte, 64)
	rm.members[rm.next] = ch
	return rm.next, ch
}

func (rm *room) leave(id int) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	delete(rm.members, id)
}

// say queues msg for every member; a member whose queue is full (it stopped
// reading: credit held it up) misses the message rather than holding up
// the room.
func (rm *room) say(msg []byte) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	for _, ch := range rm.members {
		select {
		case ch <- msg:
		default:
		}
	}
}

func (rm *room) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := sluice.Accept(w, r, &sluice.AcceptOptions{ReadLimit: 64 << 10})
	if err != nil {
		return
	}
	id, out := rm.join()
	defer rm.leave(id)
	// one goroutine writes what the room says, this one reads
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case msg := <-out:
				if ws.WriteMessage(sluice.TextMessage, msg) != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	rm.say([]byte(fmt.Sprintf("%d joined", id)))
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			rm.say([]byte(fmt.Sprintf("%d left", id)))
			return
		}
		if typ != sluice.TextMessage {
			ws.Close(sluice.CloseUnsupportedData, "text only")
			return
		}
		if string(data) == "/quit" {
			ws.Close(4000, "bye")
			rm.say([]byte(fmt.Sprintf("%d left", id)))
			return
		}
		rm.say([]byte(fmt.Sprintf("%d: %s", id, data)))
	}
}

func main() {
	rm := &room{members: map[int]chan []byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/chat", rm.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "WebSockets at /echo and /chat")
	})
	log.Fatal(sluice.Serve(mux))
}
