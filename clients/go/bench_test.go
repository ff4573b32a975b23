package sluice_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	sluice "sluice.dev/go"
	"sluice.dev/go/protocol"
)

// BenchmarkHello measures the worker's side of a hello request: the
// gateway's part is a minimal stand-in that writes REQUEST frames in
// batches of 50 (as the gateway does under load) and counts the END frames
// that come back.
//
//	go test -run '^$' -bench Hello -benchmem -cpu 1 .
func BenchmarkHello(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("Hello, world!\n"))
	})
	path := filepath.Join(b.TempDir(), "gw.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	w, err := sluice.NewWorker(h, sluice.WithSocket(path), sluice.WithSignals(false))
	if err != nil {
		b.Fatal(err)
	}
	go w.Serve()
	c, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	var f protocol.Frame
	buf := make([]byte, 1<<20)
	n, _ := c.Read(buf) // the worker's HELLO
	_ = n
	hello := protocol.Frame{Type: protocol.Hello, Version: 1}
	hello.Settings.Window, hello.Settings.Has = 1<<20, protocol.KeyWindow
	c.Write(protocol.AppendFrame(nil, &hello))

	const batch = 50
	sid := uint64(1)
	req := func(out []byte) []byte {
		f.Reset()
		f.Type, f.Stream, f.Method, f.Target, f.Version = protocol.Request, sid, []byte("GET"), []byte("/"), 11
		f.Headers = append(f.Headers, protocol.Header{Name: []byte("host"), Value: []byte("127.0.0.1:8080")},
			protocol.Header{Name: []byte("user-agent"), Value: []byte("sluice-load/0.1.0")})
		f.Client, f.Server, f.Scheme = protocol.Addr{Host: "127.0.0.1", Port: 40000 + uint16(sid%50)},
			protocol.Addr{Host: "127.0.0.1", Port: 8080}, "http"
		sid++
		return protocol.AppendFrame(out, &f)
	}
	var out []byte
	pending := 0 // bytes of a partial frame at the start of buf
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		k := min(batch, b.N-done)
		out = out[:0]
		for i := 0; i < k; i++ {
			out = req(out)
		}
		if _, err := c.Write(out); err != nil {
			b.Fatal(err)
		}
		for ends := 0; ends < k; {
			n, err := c.Read(buf[pending:])
			if err != nil && err != io.EOF {
				b.Fatal(err)
			}
			end := pending + n
			off := 0
			for end-off >= 4 {
				l := int(binary.BigEndian.Uint32(buf[off:]))
				if end-off < 4+l {
					break
				}
				// [type, ...]: the type is the byte after the array header
				if buf[off+5] == byte(protocol.End) {
					ends++
				}
				off += 4 + l
			}
			pending = copy(buf, buf[off:end])
		}
		done += k
	}
	b.StopTimer()
}
