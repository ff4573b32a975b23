package protocol

// Replays every protocol vector (protocol/vectors/README.md): decode vectors
// whole, byte by byte and at eight pseudo-random splittings, canonical ones
// re-encoded byte for byte; session vectors through the link state machine of
// their role, with the recorded HELLO settings checked.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"testing"
)

const vectorDir = "../../../protocol/vectors"

type vector struct {
	Kind        string           `json:"kind"`
	Description string           `json:"description"`
	MaxFrame    int              `json:"max_frame"`
	Hex         string           `json:"hex"`
	Frames      []map[string]any `json:"frames"`
	Error       *string          `json:"error"`
	Canonical   bool             `json:"canonical"`
	Role        string           `json:"role"`
	MaxStreams  int              `json:"max_streams"`
	Steps       []struct {
		Send   map[string]any `json:"send"`
		Recv   map[string]any `json:"recv"`
		Hex    string         `json:"hex"`
		Expect string         `json:"expect"`
	} `json:"steps"`
}

// vectorFiles returns the vector file names, in name order.
func vectorFiles(tb testing.TB) []string {
	tb.Helper()
	entries, err := os.ReadDir(vectorDir)
	if err != nil {
		tb.Fatalf("reading the vectors: %v", err)
	}
	re := regexp.MustCompile(`^[0-9]{3}-.*\.json$`)
	var files []string
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		tb.Fatal("no vectors found in " + vectorDir)
	}
	return files
}

func loadVector(tb testing.TB, name string) *vector {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v vector
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	for i := range v.Frames {
		v.Frames[i] = normalize(v.Frames[i]).(map[string]any)
	}
	for i := range v.Steps {
		if v.Steps[i].Send != nil {
			v.Steps[i].Send = normalize(v.Steps[i].Send).(map[string]any)
		}
		if v.Steps[i].Recv != nil {
			v.Steps[i].Recv = normalize(v.Steps[i].Recv).(map[string]any)
		}
	}
	return &v
}

// normalize turns JSON numbers (all non-negative integers) into uint64.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseUint(string(x), 10, 64)
		if err != nil {
			panic("vector number " + string(x))
		}
		return n
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	}
	return v
}

/* ---- byte strings: one JSON character per byte (latin1) ---------------- */

func latin1Bytes(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			panic(fmt.Sprintf("vector string holds U+%04X", r))
		}
		b = append(b, byte(r))
	}
	return b
}

func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

/* ---- frames <-> vector frame objects -------------------------------------- */

var settingNames = [...]struct {
	k    Key
	name string
}{
	{KeyPid, "pid"}, {KeyLib, "lib"}, {KeyMaxStreams, "max_streams"}, {KeyWindow, "window"},
	{KeyMaxFrame, "max_frame"}, {KeyToken, "token"}, {KeyWorkerID, "worker_id"},
	{KeyPool, "pool"}, {KeyServer, "server"}, {KeyWebSocket, "websocket"},
}

func settingsToVector(s *Settings) map[string]any {
	m := map[string]any{}
	for _, e := range settingNames {
		if s.Has&e.k == 0 {
			continue
		}
		var v any
		switch e.k {
		case KeyPid:
			v = s.Pid
		case KeyLib:
			v = latin1([]byte(s.Lib))
		case KeyMaxStreams:
			v = s.MaxStreams
		case KeyWindow:
			v = s.Window
		case KeyMaxFrame:
			v = s.MaxFrame
		case KeyToken:
			v = latin1([]byte(s.Token))
		case KeyWorkerID:
			v = s.WorkerID
		case KeyPool:
			v = latin1([]byte(s.Pool))
		case KeyServer:
			v = latin1([]byte(s.Server))
		case KeyWebSocket:
			v = s.WebSocket
		}
		m[e.name] = v
	}
	return m
}

func settingsFromVector(m map[string]any) Settings {
	var s Settings
	for _, e := range settingNames {
		v, ok := m[e.name]
		if !ok {
			continue
		}
		s.Has |= e.k
		switch e.k {
		case KeyPid:
			s.Pid = v.(uint64)
		case KeyLib:
			s.Lib = string(latin1Bytes(v.(string)))
		case KeyMaxStreams:
			s.MaxStreams = v.(uint64)
		case KeyWindow:
			s.Window = v.(uint64)
		case KeyMaxFrame:
			s.MaxFrame = v.(uint64)
		case KeyToken:
			s.Token = string(latin1Bytes(v.(string)))
		case KeyWorkerID:
			s.WorkerID = v.(uint64)
		case KeyPool:
			s.Pool = string(latin1Bytes(v.(string)))
		case KeyServer:
			s.Server = string(latin1Bytes(v.(string)))
		case KeyWebSocket:
			s.WebSocket = v.(bool)
		}
	}
	return s
}

func headersToVector(h []Header) []any {
	out := make([]any, 0, len(h))
	for _, e := range h {
		out = append(out, []any{latin1(e.Name), latin1(e.Value)})
	}
	return out
}

func headersFromVector(v any) []Header {
	list := v.([]any)
	out := make([]Header, 0, len(list))
	for _, e := range list {
		p := e.([]any)
		out = append(out, Header{Name: latin1Bytes(p[0].(string)), Value: latin1Bytes(p[1].(string))})
	}
	return out
}

func addrToVector(a Addr) []any { return []any{latin1([]byte(a.Host)), uint64(a.Port)} }

func addrFromVector(v any) Addr {
	p := v.([]any)
	return Addr{Host: string(latin1Bytes(p[0].(string))), Port: uint16(p[1].(uint64))}
}

// toVector renders a decoded frame as a vector frame object.
func toVector(f *Frame) map[string]any {
	m := map[string]any{"type": f.Type.String(), "stream": f.Stream}
	text := func(s string) string { return latin1([]byte(s)) }
	switch f.Type {
	case Hello:
		m["version"] = f.Version
		m["settings"] = settingsToVector(&f.Settings)
	case Request:
		m["method"] = latin1(f.Method)
		m["target"] = latin1(f.Target)
		m["version"] = f.Version
		m["headers"] = headersToVector(f.Headers)
		m["client"] = addrToVector(f.Client)
		m["server"] = addrToVector(f.Server)
		m["scheme"] = text(f.Scheme)
		m["body"] = f.BodyMode
	case Response:
		m["status"] = f.Status
		m["headers"] = headersToVector(f.Headers)
		m["body"] = f.BodyMode
	case Body:
		m["data"] = latin1(f.Data)
	case End:
		if len(f.Headers) > 0 {
			m["trailers"] = headersToVector(f.Headers)
		}
	case Credit:
		m["increment"] = f.Increment
	case Cancel:
		m["reason"] = f.Reason
		if f.HasMessage {
			m["message"] = text(f.Message)
		}
	case Reset:
		m["code"] = f.Code
		if f.HasMessage {
			m["message"] = text(f.Message)
		}
	case Limit:
		m["max_body"] = f.MaxBody
	case Ping, Pong:
		m["opaque"] = f.Opaque
	case Drain:
		m["timeout_ms"] = f.TimeoutMs
	case Retire:
		if f.HasMessage {
			m["reason"] = text(f.Message)
		}
	case Error:
		m["code"] = f.Code
		m["message"] = text(f.Message)
	case Message:
		m["flags"] = f.Flags
		m["data"] = latin1(f.Data)
	case Close:
		m["code"] = f.Code
		if f.HasMessage {
			m["reason"] = text(f.Message)
		}
	}
	return m
}

// fromVector builds a frame from a vector frame object.
func fromVector(m map[string]any) *Frame {
	t, ok := TypeByName(m["type"].(string))
	if !ok {
		panic("vector frame type " + m["type"].(string))
	}
	f := &Frame{Type: t, Stream: m["stream"].(uint64)}
	u := func(k string) uint64 { return m[k].(uint64) }
	s := func(k string) (string, bool) {
		v, ok := m[k]
		if !ok {
			return "", false
		}
		return string(latin1Bytes(v.(string))), true
	}
	switch t {
	case Hello:
		f.Version = u("version")
		f.Settings = settingsFromVector(m["settings"].(map[string]any))
	case Request:
		f.Method = latin1Bytes(m["method"].(string))
		f.Target = latin1Bytes(m["target"].(string))
		f.Version = u("version")
		f.Headers = headersFromVector(m["headers"])
		f.Client = addrFromVector(m["client"])
		f.Server = addrFromVector(m["server"])
		f.Scheme, _ = s("scheme")
		f.BodyMode = u("body")
	case Response:
		f.Status = u("status")
		f.Headers = headersFromVector(m["headers"])
		f.BodyMode = u("body")
	case Body, Message:
		f.Data = latin1Bytes(m["data"].(string))
		if t == Message {
			f.Flags = u("flags")
		}
	case End:
		if v, ok := m["trailers"]; ok {
			f.Headers = headersFromVector(v)
		}
	case Credit:
		f.Increment = u("increment")
	case Cancel:
		f.Reason = u("reason")
		f.Message, f.HasMessage = s("message")
	case Reset:
		f.Code = u("code")
		f.Message, f.HasMessage = s("message")
	case Limit:
		f.MaxBody = u("max_body")
	case Ping, Pong:
		f.Opaque = u("opaque")
	case Drain:
		f.TimeoutMs = u("timeout_ms")
	case Retire:
		f.Message, f.HasMessage = s("reason")
	case Error:
		f.Code = u("code")
		f.Message, f.HasMessage = s("message")
	case Close:
		f.Code = u("code")
		f.Message, f.HasMessage = s("reason")
	}
	return f
}

/* ---- replay helpers -------------------------------------------------------- */

func errName(err error) string {
	var le *LinkError
	if errors.As(err, &le) {
		return le.Code.String()
	}
	return "unexpected error " + err.Error()
}

type outcome struct {
	frames []map[string]any
	err    string
}

// replay feeds input to a StreamDecoder in the pieces cuts delimit.
func replay(input []byte, maxFrame int, cuts []int) outcome {
	sd := NewStreamDecoder(maxFrame)
	sd.Decoder().SetMaxHeaders(1024)
	var f Frame
	out := outcome{frames: []map[string]any{}}
	prev := 0
	for _, c := range append(append([]int(nil), cuts...), len(input)) {
		sd.Feed(input[prev:c])
		prev = c
		for {
			ok, err := sd.Next(&f)
			if err != nil {
				out.err = errName(err)
				return out
			}
			if !ok {
				break
			}
			out.frames = append(out.frames, toVector(&f))
		}
	}
	if err := sd.Finish(); err != nil {
		out.err = errName(err)
	}
	return out
}

// xorshift32: the splittings are pseudo-random but the same at every run.
type xorshift uint32

func (x *xorshift) next() uint32 {
	s := uint32(*x)
	s ^= s << 13
	s ^= s >> 17
	s ^= s << 5
	*x = xorshift(s)
	return s
}

func (x *xorshift) intn(n int) int { return int(uint64(x.next()) * uint64(n) >> 32) }

func splits(n int, rnd *xorshift) []int {
	k := 1 + rnd.intn(min(8, max(1, n)))
	seen := map[int]bool{}
	for i := 0; i < k; i++ {
		seen[rnd.intn(n+1)] = true
	}
	cuts := make([]int, 0, len(seen))
	for c := range seen {
		cuts = append(cuts, c)
	}
	sort.Ints(cuts)
	return cuts
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

/* ---- the test ------------------------------------------------------------- */

func TestVectors(t *testing.T) {
	var decodes, sessions, canonicals int
	for i, name := range vectorFiles(t) {
		v := loadVector(t, name)
		switch v.Kind {
		case "decode":
			decodes++
			if v.Canonical {
				canonicals++
			}
			t.Run(name, func(t *testing.T) { replayDecode(t, v, uint32(0x5eed+i)) })
		case "session":
			sessions++
			t.Run(name, func(t *testing.T) { replaySession(t, v) })
		default:
			t.Errorf("%s: unknown vector kind %q", name, v.Kind)
		}
	}
	if decodes < 200 || sessions < 80 || canonicals < 50 {
		t.Errorf("too few vectors replayed: %d decode (%d canonical), %d session", decodes, canonicals, sessions)
	}
	t.Logf("replayed %d decode vectors (%d canonical) and %d session vectors", decodes, canonicals, sessions)
}

func replayDecode(t *testing.T, v *vector, seed uint32) {
	t.Helper()
	t.Log(v.Description)
	input := mustHex(t, v.Hex)
	want := outcome{frames: v.Frames, err: ""}
	if want.frames == nil {
		want.frames = []map[string]any{}
	}
	if v.Error != nil {
		want.err = *v.Error
	}
	check := func(how string, cuts []int) {
		got := replay(input, v.MaxFrame, cuts)
		if got.err != want.err {
			t.Fatalf("%s: error %q, want %q", how, got.err, want.err)
		}
		if !reflect.DeepEqual(got.frames, want.frames) {
			t.Fatalf("%s: frames\n got %v\nwant %v", how, got.frames, want.frames)
		}
	}
	check("whole", nil)
	every := make([]int, 0, len(input))
	for i := 1; i < len(input); i++ {
		every = append(every, i)
	}
	check("byte by byte", every)
	rnd := xorshift(seed)
	for r := 0; r < 8; r++ {
		cuts := splits(len(input), &rnd)
		check(fmt.Sprintf("split at %v", cuts), cuts)
	}

	// Parse directly: it never consumes more than the frame, and a frame
	// decoded from the whole input re-encodes canonically when the vector says so.
	d := NewDecoder(v.MaxFrame)
	d.SetMaxHeaders(1024)
	var f Frame
	var enc []byte
	for off := 0; off < len(input); {
		n, err := d.Parse(input[off:], &f)
		if err != nil || n == 0 {
			break
		}
		enc = AppendFrame(enc, &f)
		off += n
	}
	if v.Canonical {
		if want.err != "" {
			t.Fatal("a canonical vector with an error")
		}
		var fromFrames []byte
		for _, fr := range v.Frames {
			fromFrames = AppendFrame(fromFrames, fromVector(fr))
		}
		if !bytes.Equal(fromFrames, input) {
			t.Fatalf("canonical encoding of the vector's frames:\n got %x\nwant %x", fromFrames, input)
		}
		if !bytes.Equal(enc, input) {
			t.Fatalf("canonical encoding of the decoded frames:\n got %x\nwant %x", enc, input)
		}
	}
}

func replaySession(t *testing.T, v *vector) {
	t.Helper()
	t.Log(v.Description)
	role := RoleWorker
	switch v.Role {
	case "worker":
	case "gateway":
		role = RoleGateway
	default:
		t.Fatalf("role %q", v.Role)
	}
	l := NewLink(role, v.MaxStreams)
	d := NewDecoder(DefaultFrame)
	var f Frame
	for i, step := range v.Steps {
		dir, want := "recv", step.Recv
		if step.Send != nil {
			dir, want = "send", step.Send
		}
		where := fmt.Sprintf("step %d (%s %v, expect %s)", i, dir, want["type"], step.Expect)
		input := mustHex(t, step.Hex)
		n, err := d.Parse(input, &f)
		if err != nil {
			if dir != "recv" {
				t.Fatalf("%s: decoding failed: %v", where, err)
			}
			if got := errName(err); got != step.Expect {
				t.Fatalf("%s: decoding: %s", where, got)
			}
			return
		}
		if n != len(input) {
			t.Fatalf("%s: decoded %d of %d bytes", where, n, len(input))
		}
		if got := toVector(&f); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: decoded frame\n got %v\nwant %v", where, got, want)
		}
		if enc := AppendFrame(nil, fromVector(want)); !bytes.Equal(enc, input) {
			t.Fatalf("%s: encoding\n got %x\nwant %x", where, enc, input)
		}
		var got string
		if dir == "send" {
			err := l.Send(&f)
			switch {
			case err == nil:
				got = "ok"
			case errors.Is(err, ErrRejected):
				got = "rejected"
			default:
				t.Fatalf("%s: Send returned %v", where, err)
			}
		} else {
			ignored, err := l.Recv(&f)
			switch {
			case err != nil:
				got = errName(err)
				if l.Failed() != err {
					t.Fatalf("%s: Failed() = %v after Recv returned %v", where, l.Failed(), err)
				}
				if _, again := l.Recv(&f); again != err {
					t.Fatalf("%s: a failed link's Recv returned %v, then %v", where, err, again)
				}
			case ignored:
				got = "ignored"
			default:
				got = "ok"
			}
		}
		if got != step.Expect {
			t.Fatalf("%s: got %s", where, got)
		}
		if want["type"] == "HELLO" && got == "ok" {
			rec := l.PeerHello()
			if dir == "send" {
				rec = l.LocalHello()
			}
			if rec == nil {
				t.Fatalf("%s: no recorded HELLO", where)
			}
			if gs := settingsToVector(rec); !reflect.DeepEqual(gs, want["settings"]) {
				t.Fatalf("%s: recorded HELLO settings\n got %v\nwant %v", where, gs, want["settings"])
			}
		}
	}
}
