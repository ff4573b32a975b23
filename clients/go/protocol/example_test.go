package protocol_test

import (
	"fmt"

	"sluice.dev/go/protocol"
)

// A worker's side of a short exchange, with the gateway's bytes made up in
// place: every frame sent passes Link.Send, then AppendFrame; every frame
// read comes from a Decoder and passes Link.Recv.
func Example() {
	link := protocol.NewLink(protocol.RoleWorker, 4)
	var out []byte
	send := func(f *protocol.Frame) {
		if err := link.Send(f); err != nil {
			panic(err)
		}
		out = protocol.AppendFrame(out, f)
	}
	send(&protocol.Frame{Type: protocol.Hello, Version: protocol.Version, Settings: protocol.Settings{
		MaxStreams: 4, Window: 65536, Lib: "sluice-go/0.1.0",
		Has: protocol.KeyMaxStreams | protocol.KeyWindow | protocol.KeyLib}})

	// What the gateway sends: its HELLO and a request.
	var in []byte
	in = protocol.AppendFrame(in, &protocol.Frame{Type: protocol.Hello, Version: 1,
		Settings: protocol.Settings{Window: 65536, WorkerID: 1, Has: protocol.KeyWindow | protocol.KeyWorkerID}})
	in = protocol.AppendFrame(in, &protocol.Frame{Type: protocol.Request, Stream: 1, Method: []byte("GET"),
		Target: []byte("/"), Version: 11, Scheme: "http", Headers: []protocol.Header{{Name: []byte("host"), Value: []byte("example.com")}}})

	d := protocol.NewDecoder(protocol.DefaultFrame)
	var f protocol.Frame
	for len(in) > 0 {
		n, err := d.Parse(in, &f)
		if err != nil || n == 0 {
			panic(fmt.Sprint("decode: ", err))
		}
		in = in[n:]
		if _, err := link.Recv(&f); err != nil {
			panic(err) // a *LinkError: send ERROR with its code and close
		}
		if f.Type == protocol.Request {
			fmt.Printf("%s %s %s on stream %d\n", f.Method, f.Target, f.Headers[0].Value, f.Stream)
			send(&protocol.Frame{Type: protocol.Response, Stream: f.Stream, Status: 200, BodyMode: protocol.BodyFollows})
			body := []byte("hello")
			if err := link.Send(&protocol.Frame{Type: protocol.Body, Stream: f.Stream, Data: body}); err != nil {
				panic(err)
			}
			out = protocol.AppendDataHeader(out, protocol.Body, f.Stream, 0, len(body))
			out = append(out, body...) // or writev the header and the data
			send(&protocol.Frame{Type: protocol.End, Stream: f.Stream})
		}
	}
	fmt.Println("ready:", link.Ready(), "open streams:", link.OpenStreams(), "bytes out:", len(out))
	// Output:
	// GET / example.com on stream 1
	// ready: true open streams: 0 bytes out: 86
}
